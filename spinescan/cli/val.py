"""``spinescan val``: score exported models on your own labelled films (no TensorFlow)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from spinescan.cli.options import json_option, verbosity, verbosity_options
from spinescan.cli.progress import ClickProgress
from spinescan.edge.onnxmodel import DEVICES


def _ci(ci: Any) -> str:
    if not ci or ci[0] is None or ci[0] != ci[0]:
        return ""
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def _num(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None or v != v else format(v, fmt)


def format_result(result: Any) -> str:
    """The figures as a reader wants them on a terminal: one block per model, then what was skipped."""
    lines: list[str] = []
    for name, f in result.models.items():
        lines.append(f"{name} ({f['view']}, {f['task']}): {f.get('n', 0)} films")
        if not f.get("n"):
            continue
        if f["task"] == "classification":
            for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
                lines.append(f"  {key:<20} {_num(f.get(key))}{_ci(f.get(key + '_ci'))}")
            lines.append(f"  {'ece':<20} {_num(f.get('ece'))}")
            for c in f["classes"]:
                lines.append(
                    f"  {c:<20} sensitivity {_num(f['sensitivity'][c])}{_ci(f['sensitivity_ci'][c])}  "
                    f"specificity {_num(f['specificity'][c])}{_ci(f['specificity_ci'][c])}"
                )
            lines.append(f"  confusion (rows true, columns predicted: {', '.join(f['classes'])})")
            lines.extend(f"    {row}" for row in f["confusion_matrix"])
            continue
        error = _num(f.get("landmark_error"), ".4f")
        lines.append(f"  {'landmark error':<20} {error} (fraction of film height)")
        for angle, a in f["angles"].items():
            lines.append(
                f"  {angle:<20} MAE {_num(a['mae'], '.2f')} deg  bias {_num(a['bias'], '+.2f')} deg  "
                f"(n={a['n']}, not measured {a['not_measured']})"
            )
        lines.append(f"  {'SMAPE':<20} {_num(f.get('smape'), '.2f')} %")
        for c in f["classes"]:
            lines.append(
                f"  {c:<20} at the clinical threshold: sensitivity {_num(f['threshold_sensitivity'][c])}"
                f"{_ci(f['threshold_sensitivity_ci'][c])}  specificity {_num(f['threshold_specificity'][c])}"
                f"{_ci(f['threshold_specificity_ci'][c])}"
            )
    s = result.skipped
    lines.append(f"scored {s['n_scored']} of {s['n_films']} films")
    for reason, entry in s.items():
        if isinstance(entry, dict) and "n" in entry:
            more = f" (first {len(entry['files'])})" if entry["n"] > len(entry["files"]) else ""
            lines.append(f"  skipped, {reason}: {entry['n']}{more}: {', '.join(entry['files'])}")
    for name, why in s.get("models_not_scored", {}).items():
        lines.append(f"  not scored, {name}: {why}")
    return "\n".join(lines)


@click.command("val")
@click.argument("model_or_dir", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--view",
    type=click.Choice(["lateral", "ap"]),
    help="The films' view when DATA does not say it; also keeps only the models of that view.",
)
@click.option("--int8", is_flag=True, help="Use the int8 model where one was shipped.")
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=lambda: os.environ.get("SPINESCAN_DEVICE") or "cpu",
    show_default="$SPINESCAN_DEVICE or cpu",
    help="onnxruntime execution provider (gpu: an error when this onnxruntime has no CUDA provider).",
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Write val.json, films.csv (one row per film and model) and the plots here.")  # fmt: skip
@click.option("--no-plots", is_flag=True, help="With --out: no plots (and matplotlib is never imported).")
@click.option("--boot", "n_boot", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap replicates for the 95% CIs.")  # fmt: skip
@json_option("Print the figures as one JSON document (schema spinescan.val/1); progress goes to stderr.")
@verbosity_options(quiet_help="No progress lines.", verbose_help="Also list every file written.")
def val(
    model_or_dir: Path,
    data: Path,
    view: str | None,
    int8: bool,
    device: str,
    out: Path | None,
    no_plots: bool,
    n_boot: int,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Score an exported model (an .onnx file) or an export set (a folder) on labelled films.

    DATA is a folder (DIR/<class>/*, DIR/<view>/<class>/*, or with a manifest.csv) or a .csv
    manifest (columns file, label[, view]; landmark models also need a 'landmarks' column or one
    column per angle). Classifiers: accuracy, balanced accuracy, macro-F1, AUC (95% bootstrap CIs),
    per-class sensitivity and specificity, calibration, confusion matrix: the benchmark's own
    figures. Landmark models: landmark error, angle MAE and bias, SMAPE, and the sensitivity and
    specificity of the label their angles imply. Films that are unreadable, of another view or
    with an unknown label are listed and the rest scored. No TensorFlow is needed.
    """
    from spinescan.evaluation.val import ValConfig, validate
    from spinescan.evaluation.val_outputs import jsonable, write_outputs

    verbosity(quiet, verbose)  # both at once: a usage error
    progress = ClickProgress(quiet=quiet)
    config = ValConfig(models=model_or_dir, data=data, view=view, int8=int8, device=device, n_boot=n_boot)
    result = validate(config, progress)
    if out is not None:
        written = write_outputs(result, out, plots=not no_plots)
        progress.info(f"wrote {len(written)} file(s) to {out}")
        if verbose:
            for path in written:
                progress.info(f"  {path}")
    if as_json:
        click.echo(json.dumps(jsonable(result.to_dict()), indent=2, allow_nan=False))
    else:
        click.echo(format_result(result))


COMMANDS = [val]
