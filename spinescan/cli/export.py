"""``spinescan export --onnx``: argument parsing and the summary; the work is in spinescan.export.exporter."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spinescan.cli.options import device_option, json_option, runs_option, verbosity, verbosity_options
from spinescan.cli.progress import ClickProgress


def _warn(message: str) -> None:
    """A refusal or a warning: on stderr even with --quiet (the error at the end says 'see above')."""
    click.echo(message, err=True)


def file_lines(entry: dict) -> list[str]:
    """``export -v``: every file the model shipped with, with its sha256 (as manifest.json lists it)."""
    lines = [f"  file {entry['file']} sha256 {entry['sha256']}"]
    int8 = entry.get("int8") or {}
    if int8.get("shipped") and int8.get("file"):
        lines.append(f"  file {int8['file']} sha256 {int8.get('sha256')}")
    if entry.get("card"):
        lines.append(f"  card {entry['card']}")
    return lines


def summary_lines(entry: dict) -> list[str]:
    """What one exported model looks like: file, size, parity, int8 verdict, warnings."""
    parity = entry["parity"]
    lines = [
        f"{entry['model']}: {entry['file']} ({entry['size_bytes'] / 1e6:.2f} MB, run {entry['run_id']}, "
        f"{entry.get('backbone') or '?'})"
        + (" WEAK (exported with --allow-weak)" if entry.get("weak") else ""),
        f"  parity on {parity['images']} {parity['split']} images: "
        + (
            f"max |Δxy| {parity['max_abs_diff']:.1e} {parity['unit']}, identical visibility "
            if parity.get("unit")
            else f"max |Δp| {parity['max_abs_diff']:.1e}, identical argmax "
        )
        + f"{'yes' if parity['argmax_identical'] else 'no'}"
        + (f" ({parity['note']})" if parity.get("note") else ""),
    ]
    cam, cam_info = parity.get("cam"), entry.get("cam") or {}
    lines.append(
        f"  heatmap (CAM grid {cam_info.get('grid')}): Keras vs ONNX max |Δ| {cam['max_abs_diff']:.1e}"
        if cam
        else f"  no heatmap: {cam_info.get('reason', 'no cam output')}"
    )
    int8 = entry.get("int8")
    if int8:
        verdict = f"shipped as {int8['file']}" if int8["shipped"] else "NOT shipped (fp32 only)"
        lines.append(f"  int8: {verdict}: {int8['reason']}")
        if int8.get("agreement") is not None:
            lines.append(
                f"    size {int8['size_fp32'] / 1e6:.2f} -> {int8['size_int8'] / 1e6:.2f} MB "
                f"({int8['size_ratio']}x smaller); batch-1 latency {int8['latency_ms_fp32']:.2f} -> "
                f"{int8['latency_ms_int8']:.2f} ms; test accuracy {int8['accuracy_fp32']:.3f} -> "
                f"{int8['accuracy_int8']:.3f}"
            )
    for warning in entry["conversion"]["warnings"]:
        lines.append(f"  tf2onnx warning: {warning}")
    return lines


@click.command("export")
@click.argument("names", nargs=-1)
@click.option("--onnx", "to_onnx", is_flag=True, default=True, help="Export to ONNX (the only format).")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), help="Export this one run directory.")
@runs_option("Runs folder (holds winners.json).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("exported"),
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    help="Also try a static int8 model (shipped only if it passes the gate).",
)
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True, help="ONNX opset.")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="The run's dataset, if it moved since training (for the checks).",
)
@click.option(
    "--allow-weak",
    is_flag=True,
    help="Export even a model whose test accuracy is not clearly above chance or its shortcut probe.",
)
@json_option(
    "Print the result as one JSON document on stdout (the version, each model's files with sha256 "
    "and int8 verdict, the weak-model gate of every run); progress goes to stderr."
)
@verbosity_options(
    quiet_help="No progress lines: only the summary, refusals and errors.",
    verbose_help="Also every file of each exported model with its sha256.",
)
@device_option
def export_command(
    names: tuple[str, ...],
    to_onnx: bool,
    run_dir: Path | None,
    runs_dir: Path,
    out: Path,
    quantize: str | None,
    opset: int,
    data: Path | None,
    allow_weak: bool,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Export models NAME... (their latest finished runs) to ONNX for the edge predictor.

    With no NAME and no --run, exports the benchmark's winners (RUNS/winners.json), or with no
    benchmark yet the latest finished run of every model. A model whose test accuracy's 95%
    bootstrap lower bound is not above chance (the majority class) or its best shortcut probe is
    refused unless --allow-weak. Each file
    carries its classes, input size and preprocessing in its metadata, is checked against Keras
    on the run's validation images (max |Δp| <= 1e-4, same argmax) and is listed with its sha256
    in OUT/manifest.json, beside a model card and the standalone OUT/predict.py. If any model
    fails a check, nothing is written and the previous set stays. A weak model (no better than
    chance or its shortcut probe on its own test split) is refused unless --allow-weak; the others
    are exported and the command exits with status 3.
    """
    from spinescan.export.exporter import export_runs  # TensorFlow comes later
    from spinescan.export.selection import WeakModelsRefused, assess, select_runs
    from spinescan.progress import stdout_to_stderr

    level = verbosity(quiet, verbose)
    echo = ClickProgress(quiet=quiet).info
    selection = select_runs(names, run_dir, runs_dir)
    if selection.note:
        echo(selection.note)
    targets, refused, weak, gates = [], [], {}, []
    for target in selection.run_dirs:
        verdict = assess(target, data)
        gates.append(verdict)
        if not verdict.weak:
            echo(verdict.verdict())
            targets.append(target)
        elif allow_weak:
            _warn(f"{verdict.verdict()}; exporting anyway (--allow-weak), marked weak.")
            targets.append(target)
            weak[str(target)] = verdict.verdict()
        else:
            _warn(f"{verdict.verdict()}; NOT exported (train longer or on more data, or pass --allow-weak).")
            refused.append(verdict.model)
    with stdout_to_stderr(as_json):  # TensorFlow and tf2onnx may print to stdout
        report = export_runs(targets, out, quantize=quantize, opset=opset, data=data, echo=echo, weak=weak)
    if as_json:
        click.echo(json.dumps(report.to_dict(gates, refused), indent=2, allow_nan=False))
    else:
        for entry in report.exported.values():
            for line in summary_lines(entry) + (file_lines(entry) if level > 1 else []):
                click.echo(line)
        if report.exported:
            click.echo(f"Wrote {len(report.exported)} model(s), manifest.json and predict.py to {out}")
    report.raise_for_failures()
    if refused:
        raise WeakModelsRefused(
            f"refused {len(refused)} weak model(s): {', '.join(refused)} (see above; --allow-weak exports)"
        )


COMMANDS = [export_command]
