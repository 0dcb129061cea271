"""The command line of ``spinescan-predict`` (and of the exported ``predict.py``, which runs the same
``main``): its arguments, defaults and help, apart from :mod:`spinescan.edge.predictor`, which runs them."""

from __future__ import annotations

import argparse
import os

from spinescan.edge.model_files import DEFAULT_MODELS_DIR
from spinescan.edge.onnxmodel import DEVICES


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``spinescan-predict`` and of the exported ``predict.py`` (one definition)."""
    parser = argparse.ArgumentParser(
        prog="spinescan-predict",
        description="Classify spine radiographs with exported ONNX models (no TensorFlow needed).",
        epilog="Exit status: 0 all images classified, 1 some images could not be read, "
        "2 bad arguments or a refused model.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="one exported .onnx file")
    source.add_argument(
        "--models",
        help=f"a folder of exported models, used side by side (default: {DEFAULT_MODELS_DIR}/ when it "
        "holds an export, else the models bundled with the package)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.add_argument("--top", type=int, metavar="K", help="show only the K most probable classes")
    parser.add_argument("--int8", action="store_true", help="use the int8 model where one was shipped")
    parser.add_argument(
        "--overlay",
        metavar="DIR",
        help="write one PNG per image and model into DIR: a classifier's predicted-class heatmap over "
        "the film (a quality check, not a localisation claim); a landmark model's landmarks, "
        "end-vertebra lines and angles",
    )
    parser.add_argument(
        "--heatmap", action="store_true", help="with --json: include each result's heatmap grid and geometry"
    )
    parser.add_argument(
        "--view",
        choices=["lateral", "ap"],
        help="run only the models of this view (a lateral model says nothing useful about an AP film); "
        "overrides the view guard, which otherwise picks each film's models",
    )
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument(
        "-q", "--quiet", action="store_true", help="no notes on stderr: only the results and errors"
    )
    talk.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also one line per model on stderr: name, view, task, input size, file and execution provider",
    )
    parser.add_argument(
        "--device",
        choices=list(DEVICES),
        default=os.environ.get("SPINESCAN_DEVICE") or "cpu",
        help="onnxruntime execution provider: cpu, gpu (CUDA; an error when absent) or auto (GPU when "
        "present); default $SPINESCAN_DEVICE or cpu",
    )
    return parser
