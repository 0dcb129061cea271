"""``spinescan train NAME``: parse arguments, call :func:`spinescan.training.loop.train`, print a summary."""

from __future__ import annotations

from pathlib import Path

import click

from spinescan.cli.options import checkpoint_option, pretrain_options, resize_option, runs_option
from spinescan.zoo.backbones import BACKBONES  # no TensorFlow at import time


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_lines(run_dir: Path, metrics: dict) -> list[str]:
    """The end-of-training summary (also used by tests): accuracy, time, target, run dir."""
    val, test = metrics.get("val", {}), metrics.get("test", {})

    def scores(part: dict) -> str:
        return (
            f"{_fmt(part.get('accuracy'))} (balanced {_fmt(part.get('balanced_accuracy'))}, "
            f"n={part.get('n', 0)})"
        )

    target = metrics.get("target_accuracy")
    if metrics.get("epochs_to_target") is not None:
        reached = (
            f"reached {target:.2f} at epoch {metrics['epochs_to_target']} "
            f"({metrics['seconds_to_target']:.0f} s)"
        )
    else:
        reached = f"never reached {_fmt(target, '.2f')}"
    return [
        f"Finished {metrics.get('model')} ({metrics.get('backbone')}, "
        f"{metrics.get('params', 0):,} parameters)",
        f"  validation accuracy {scores(val)}, best epoch {metrics.get('best_epoch')} "
        f"of {metrics.get('epochs_run')}",
        f"  test accuracy       {scores(test)}",
        f"  training time {metrics.get('train_seconds', 0):.0f} s; target accuracy: {reached}",
        f"  run: {run_dir}",
    ]


@click.command("train")
@click.argument("name")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=Path("dataset/phantoms"),
    show_default=True,
    help="Dataset folder (DIR/<class>/*, DIR/<view>/<class>/* or DIR/manifest.csv).",
)
@click.option("--epochs", type=click.IntRange(min=0), help="Maximum epochs [plugin default].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size per replica [plugin default].")
@click.option(
    "--image-size", type=click.IntRange(min=16), help="Square input size in pixels [plugin default]."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for the split, weights and augmentation."
)
@runs_option("Where run directories go (runs/<model>/<run-id>/).")
@click.option("--resume", is_flag=True, help="Continue the latest interrupted run of NAME (or --run-id).")
@click.option("--run-id", help="Name the run directory (default: a timestamp).")
@click.option(
    "--target-accuracy", type=click.FloatRange(0, 1), help="Record when validation accuracy first reaches it."
)
@click.option("--backbone", type=click.Choice(list(BACKBONES)), help="Backbone [plugin default: compact].")
@click.option(
    "--weights",
    type=click.Choice(["none", "imagenet"]),
    default="none",
    show_default=True,
    help="Initial weights for keras.applications backbones (imagenet needs the file cached offline).",
)
@click.option(
    "--strategy",
    type=click.Choice(["auto", "mirrored", "multiworker"]),
    default="auto",
    show_default=True,
    help="tf.distribute strategy (multiworker reads TF_CONFIG).",
)
@click.option(
    "--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate."
)
@click.option("--patience", type=click.IntRange(min=1), help="Early-stopping patience in epochs.")
@click.option("--min-epochs", type=click.IntRange(min=0), help="Epochs before early stopping may act.")
@checkpoint_option
@click.option("--lr-schedule", type=click.Choice(["cosine", "plateau"]), default="cosine", show_default=True)
@click.option("--no-augment", is_flag=True, help="Train without data augmentation.")
@click.option(
    "--file-backed",
    is_flag=True,
    help="Keep the decoded images in memory-mapped files on disk, not in RAM (datasets larger than memory).",
)
@click.option(
    "--init-from",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="A run directory whose weights initialise the model (layers matched by name).",
)
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard logs into the run directory.")
@resize_option
@pretrain_options
@click.option("--quiet", is_flag=True, help="No progress output.")
def train_command(
    name: str,
    data: Path,
    epochs: int | None,
    batch_size: int | None,
    image_size: int | None,
    seed: int,
    runs_dir: Path,
    resume: bool,
    run_id: str | None,
    target_accuracy: float | None,
    backbone: str | None,
    weights: str,
    strategy: str,
    learning_rate: float | None,
    patience: int | None,
    min_epochs: int | None,
    checkpoint: str | None,
    lr_schedule: str,
    no_augment: bool,
    file_backed: bool,
    init_from: Path | None,
    tensorboard: bool,
    resize: str | None,
    pretrain: str | None,
    pretrain_per_class: int | None,
    pretrain_epochs: int | None,
    pretrain_borderline: float | None,
    quiet: bool,
) -> None:
    """Train model NAME (see `spinescan models`) with the plugin's defaults for what is not given.

    Interrupt with Ctrl-C at any time: finished epochs are kept and --resume continues.
    """
    from spinescan.training.loop import TrainConfig, train  # noqa: PLC0415 - TensorFlow is imported in train()

    config = TrainConfig(
        model=name,
        data=data,
        epochs=epochs,
        batch_size=batch_size,
        image_size=image_size,
        seed=seed,
        runs_dir=runs_dir,
        resume=resume,
        target_accuracy=target_accuracy,
        backbone=backbone,
        weights=None if weights == "none" else weights,
        learning_rate=learning_rate,
        patience=patience,
        min_epochs=min_epochs,
        strategy=strategy,
        augment=False if no_augment else None,
        run_id=run_id,
        init_from=init_from,
        tensorboard=tensorboard,
        verbose=0 if quiet else 1,
        in_memory=not file_backed,
        lr_schedule=lr_schedule,
        resize=resize,
        checkpoint=checkpoint,
    )
    if pretrain:
        from spinescan.training.pretrain import PhantomStage, pretrain_and_finetune  # noqa: PLC0415

        result = pretrain_and_finetune(
            config,
            pretrain,
            PhantomStage.from_options(pretrain_per_class, pretrain_epochs, pretrain_borderline),
            echo=lambda msg: click.echo(msg, err=True) if not quiet else None,
        )
    else:
        result = train(config)
    if not result.metrics:  # a non-chief worker of a multi-worker run
        click.echo(f"Worker finished; the chief writes {result.run_dir}")
        return
    for line in summary_lines(result.run_dir, result.metrics):
        click.echo(line)


COMMANDS = [train_command]
