"""The edge predictor without TensorFlow: metadata-driven models, bad inputs, refusals, predict.py.

The models here are tiny hand-built ONNX graphs (mean intensity -> 3 logits), stamped with the
exporter's own metadata writer, so these tests run in a second and never import TensorFlow. The
expected labels are computed independently with numpy from the shared preprocessing.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import spinescan
from spinescan.edge import predictor
from spinescan.edge.predictor import ModelRefusedError, OnnxModel, sha256_file
from spinescan.export.onnx_convert import set_metadata
from spinescan.export.standalone import write_standalone
from spinescan.radiograph.imageio import read_image
from spinescan.radiograph.preprocess import Preprocessing, preprocess

# Mean intensity m of the preprocessed image -> logits (4 - 8m, 0, 8m - 4): dark films are class 0,
# bright ones class 2.
WEIGHTS = np.array([[-8.0, 0.0, 8.0]], dtype=np.float32)
BIAS = np.array([4.0, 0.0, -4.0], dtype=np.float32)

BLOCKER = '''
import os, sys

BLOCKED = set(os.environ.get("SPINESCAN_TEST_BLOCK", "").split(","))


class _Blocker:
    """Fail any import of the listed top-level packages, as on an install without them."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test (edge install)")
        return None


sys.meta_path.insert(0, _Blocker())
'''
HEAVY = "tensorflow,keras,tf2onnx,tf_keras"


def toy_model(
    path: Path,
    name: str = "toy",
    classes: tuple[str, ...] = ("dark", "mid", "bright"),
    input_size: tuple[int, int, int] = (32, 24, 1),
    prep: Preprocessing | None = None,
    metadata: bool = True,
    view: str = "lateral",
) -> Path:
    """Write a tiny ONNX classifier with the exporter's metadata (or none)."""
    prep = prep or Preprocessing()
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape"], ["m"]),
        helper.make_node("MatMul", ["m", "w"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *input_size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(classes)])],
        [
            numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "shape"),
            numpy_helper.from_array(WEIGHTS[:, : len(classes)], "w"),
            numpy_helper.from_array(BIAS[: len(classes)], "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        set_metadata(
            model,
            {
                "model_name": name,
                "classes": list(classes),
                "view": view,
                "input_size": list(input_size),
                "preprocessing": prep.to_json(),
            },
        )
    onnx.save(model, str(path))
    return path


def expected(
    image_path: Path, input_size: tuple[int, int, int], prep: Preprocessing, n: int = 3
) -> np.ndarray:
    x = preprocess(read_image(image_path), input_size, prep)
    z = x.mean() * WEIGHTS[0, :n] + BIAS[:n]
    e = np.exp(z - z.max())
    return e / e.sum()


def write_manifest(folder: Path, *files: str) -> None:
    models = {Path(f).stem: {"file": f, "sha256": sha256_file(folder / f)} for f in files}
    (folder / "manifest.json").write_text(json.dumps({"models": models}))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good films of three brightness patterns (8/16-bit, grey/RGBA) and every kind of bad file."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    dark = (rng.random((80, 40)) * 40).astype(np.uint8)
    dark[30:50, 15:25] = 255
    bright = (200 + rng.random((60, 50)) * 55).astype(np.uint8)
    bright[:5, :5] = 0
    mid = np.tile(np.linspace(0, 65535, 36, dtype=np.uint16), (90, 1))
    rgba = cv2.cvtColor(bright, cv2.COLOR_GRAY2BGRA)
    good = {"dark.png": dark, "bright.jpg": bright, "mid16.png": mid, "rgba.png": rgba}
    out = {}
    for name, image in good.items():
        cv2.imwrite(str(d / name), image)
        out[name] = d / name
    png = (d / "dark.png").read_bytes()
    out["truncated.png"] = d / "truncated.png"
    out["truncated.png"].write_bytes(png[: len(png) // 2])
    out["empty.png"] = d / "empty.png"
    out["empty.png"].write_bytes(b"")
    out["notes.png"] = d / "notes.png"
    out["notes.png"].write_text("not an image\n")
    out["bomb.png"] = d / "bomb.png"
    out["bomb.png"].write_bytes(_png_header(60000, 60000))
    out["missing.png"] = d / "missing.png"
    return out


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (decompression bomb): refused before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


GOOD = ("dark.png", "bright.jpg", "mid16.png", "rgba.png")
BAD = ("truncated.png", "empty.png", "notes.png", "bomb.png", "missing.png")


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """Two models side by side with different sizes, channels, preprocessing and classes."""
    d = tmp_path / "exported"
    d.mkdir()
    toy_model(d / "toy.onnx")
    toy_model(
        d / "other.onnx",
        name="other",
        classes=("low", "high"),
        input_size=(20, 20, 3),
        prep=Preprocessing(resize="spine_crop", intensity="divide255", pad_value=0.5),
    )
    write_manifest(d, "toy.onnx", "other.onnx")
    return d


def _blocked_env(tmp_path: Path, block: str = HEAVY) -> dict[str, str]:
    site = tmp_path / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(site), SPINESCAN_TEST_BLOCK=block)
    return env


def test_blocker_really_blocks_tensorflow(tmp_path: Path) -> None:
    """Guard for the no-TensorFlow tests below: the blocker must make `import tensorflow` fail."""
    proc = subprocess.run(
        [sys.executable, "-c", "import tensorflow"],
        env=_blocked_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "blocked in this test" in proc.stderr


def test_cli_without_tensorflow_classifies_good_and_reports_bad(
    tmp_path: Path, models_dir: Path, images: dict[str, Path]
) -> None:
    script = "import sys; from spinescan.edge.predictor import main; sys.exit(main())"
    args = [str(images[n]) for n in (*GOOD, *BAD)]
    proc = subprocess.run(
        [sys.executable, "-c", script, "--models", str(models_dir), "--json", *args],
        env=_blocked_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr  # some inputs failed
    results = json.loads(proc.stdout)
    errors = {Path(r["image"]).name: r["error"] for r in results if "error" in r}
    assert set(errors) == set(BAD)
    assert "truncated" in errors["truncated.png"]
    assert "empty" in errors["empty.png"]
    assert "not a supported image" in errors["notes.png"]
    assert "exceeds the limit" in errors["bomb.png"]
    assert "not found" in errors["missing.png"]
    ok = [r for r in results if "error" not in r]
    assert len(ok) == 2 * len(GOOD)  # every good image, by both models
    specs = {
        "toy": ((32, 24, 1), Preprocessing(), ("dark", "mid", "bright")),
        "other": (
            (20, 20, 3),
            Preprocessing(resize="spine_crop", intensity="divide255", pad_value=0.5),
            ("low", "high"),
        ),
    }
    labels = set()
    for r in ok:
        size, prep, classes = specs[r["model"]]
        want = expected(Path(r["image"]), size, prep, len(classes))
        assert list(r["probabilities"]) == list(classes)
        np.testing.assert_allclose(list(r["probabilities"].values()), want, atol=1e-5)
        assert r["label"] == classes[int(np.argmax(want))]
        labels.add((r["model"], r["label"]))
    assert {("toy", "dark"), ("toy", "bright")} <= labels  # the toy model is not constant


def test_standalone_predict_py_needs_no_spinescan_or_tensorflow(
    tmp_path: Path, models_dir: Path, images: dict[str, Path]
) -> None:
    script = write_standalone(models_dir)
    env = _blocked_env(tmp_path, HEAVY + ",spinescan,spinescan_plugins,click,pluggy")
    files = [str(images[n]) for n in ("dark.png", "rgba.png", "notes.png")]
    proc = subprocess.run(
        [sys.executable, str(script), "--json", *files], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    got = json.loads(proc.stdout)
    direct = predictor.classify_files(
        [Path(f) for f in files], [OnnxModel(models_dir / "other.onnx"), OnnxModel(models_dir / "toy.onnx")]
    )
    key = lambda r: (r["image"], r.get("model", ""))  # noqa: E731
    assert sorted(got, key=key) == sorted(direct, key=key)


def test_standalone_embeds_the_package_sources(tmp_path: Path) -> None:
    text = write_standalone(tmp_path).read_text()
    for module in ("radiograph.preprocess", "radiograph.imageio", "edge.predictor", "errors"):
        source = (Path(spinescan.__file__).parent / (module.replace(".", "/") + ".py")).read_text()
        assert source in text, f"{module}.py is not embedded verbatim"


def test_predict_image_api(models_dir: Path, images: dict[str, Path]) -> None:
    out = spinescan.predict_image(str(images["dark.png"]), model="toy", models_dir=str(models_dir))
    want = expected(images["dark.png"], (32, 24, 1), Preprocessing())
    assert out["model"] == "toy" and out["label"] == "dark"
    np.testing.assert_allclose(list(out["probabilities"].values()), want, atol=1e-5)
    by_path = predictor.predict_image(images["bright.jpg"], model=str(models_dir / "toy.onnx"))
    assert by_path["label"] == "bright"
    with pytest.raises(ModelRefusedError, match="no exported model 'nope'"):
        predictor.predict_image(images["dark.png"], model="nope", models_dir=models_dir)


def test_table_output_and_top(
    models_dir: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    code = predictor.main(["--model", str(models_dir / "toy.onnx"), "--top", "1", str(images["dark.png"])])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["image", "model", "label", "probabilities"]
    assert out[1].split()[1:4] == ["toy", "dark", "dark"]  # model, label, then only the top class
    assert "bright" not in out[1]


def test_folder_input_skips_non_images(models_dir: Path, tmp_path: Path, images: dict[str, Path]) -> None:
    folder = tmp_path / "films"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.png").write_bytes(images["dark.png"].read_bytes())
    (folder / "manifest.csv").write_text("file,label\n")
    assert predictor.expand_inputs([str(folder)]) == [folder / "sub" / "a.png"]


def test_sha_mismatch_is_refused(
    models_dir: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    # Someone swaps the class order inside the file after export: the manifest must catch it.
    model = onnx.load(str(models_dir / "toy.onnx"))
    for prop in model.metadata_props:
        if prop.key == "classes":
            prop.value = json.dumps(["bright", "mid", "dark"])
    onnx.save(model, str(models_dir / "toy.onnx"))
    with pytest.raises(ModelRefusedError, match="does not match the manifest"):
        OnnxModel(models_dir / "toy.onnx")
    code = predictor.main(["--models", str(models_dir), str(images["dark.png"])])
    assert code == 2
    assert "does not match the manifest" in capsys.readouterr().err


def test_model_not_in_manifest_is_refused(models_dir: Path) -> None:
    toy_model(models_dir / "stray.onnx", name="stray")
    with pytest.raises(ModelRefusedError, match="not listed in"):
        OnnxModel(models_dir / "stray.onnx")


def test_missing_metadata_is_refused(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    path = toy_model(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(ModelRefusedError, match="missing Spine Scan metadata"):
        OnnxModel(path)
    assert predictor.main(["--model", str(path), str(images["dark.png"])]) == 2
    assert "missing Spine Scan metadata" in capsys.readouterr().err


def test_malformed_metadata_is_refused(tmp_path: Path) -> None:
    path = toy_model(tmp_path / "m.onnx", input_size=(32, 24, 1))
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    for key, value, message in (
        ("input_size", "[16, 16, 1]", "disagrees with metadata"),
        ("classes", '["a", "b"]', "2 classes"),
        ("preprocessing", '{"resize": "letterbox", "sharpen": 2}', "unknown to this predictor"),
        ("spinescan_format", "99", "not supported"),
    ):
        set_metadata(model, {**meta, key: value})
        onnx.save(model, str(path))
        with pytest.raises(ModelRefusedError, match=message):
            OnnxModel(path)


def test_not_an_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ModelRefusedError, match="not a loadable ONNX model"):
        OnnxModel(path)


def test_view_picks_the_models_of_the_film_s_view(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    """A lateral and an AP model side by side: --view runs only the one that fits the film."""
    d = tmp_path / "exported"
    d.mkdir()
    toy_model(d / "side.onnx", name="side")
    toy_model(d / "front.onnx", name="front", classes=("low", "high"), view="ap")
    write_manifest(d, "side.onnx", "front.onnx")
    film = str(images["dark.png"])

    assert predictor.main(["--models", str(d), "--json", film]) == 0
    captured = capsys.readouterr()
    assert {r["model"] for r in json.loads(captured.out)} == {"side", "front"}
    assert "several views (ap, lateral)" in captured.err and "--view" in captured.err

    assert predictor.main(["--models", str(d), "--json", "--view", "ap", film]) == 0
    captured = capsys.readouterr()
    assert [r["model"] for r in json.loads(captured.out)] == ["front"] and "note" not in captured.err

    only_lateral = tmp_path / "lateral-only"
    only_lateral.mkdir()
    toy_model(only_lateral / "side.onnx", name="side")
    write_manifest(only_lateral, "side.onnx")
    assert predictor.main(["--models", str(only_lateral), "--view", "ap", film]) == 2
    assert "no ap model among side (lateral)" in capsys.readouterr().err


# --- the model document (issue 23 #2) -------------------------------------------------------------


def _endplates(points: list, upper: tuple[int, str], lower: tuple[int, str]) -> float:
    """The angle between two endplates of a JSON reading, computed here with numpy alone."""

    def tilt(v: int, side: str) -> float:
        first = 4 * v if side == "superior" else 4 * v + 2
        p, q = points[first], points[first + 1]
        return float(np.degrees(np.arctan2(q[1] - p[1], q[0] - p[0])))

    d = abs(tilt(*upper) - tilt(*lower)) % 180.0
    return min(d, 180.0 - d)


def test_model_document_round_trips_and_a_bad_one_is_refused_in_one_line(tmp_path: Path) -> None:
    from toy_landmarks import TOY_ANGLE, toy_angle_registered, toy_onnx, toy_spec

    from spinescan.edge.modeldoc import METADATA_KEY, DocumentError, document_for, parse_document
    from spinescan.zoo.spec import SpecError

    with pytest.raises(SpecError, match="unknown: toy_t2_t8_deg"):  # an angle no definition names
        toy_spec()
    with toy_angle_registered():
        doc = document_for(toy_spec())
    assert parse_document(doc.dumps()) == doc == parse_document(json.loads(doc.dumps()))
    assert doc.schema_version == 1 and doc.measurements[-1] == TOY_ANGLE
    kyphosis = doc.measurements[0].to_json()
    assert kyphosis["thresholds"] == [
        {"finding": "hypo", "op": "<", "limit": 20.0, "source": kyphosis["thresholds"][0]["source"]},
        {"finding": "hyper", "op": ">", "limit": 45.0, "source": kyphosis["thresholds"][1]["source"]},
    ] and "Fon, Pitt & Thies" in kyphosis["thresholds"][1]["source"]
    good = json.loads(doc.dumps())
    bad = {
        "not JSON": "{not json",
        "not a Spine Scan model document": {**good, "schema": "other"},
        "model document version 2 is not supported": {**good, "schema_version": 2},
        "malformed model document (missing 'view')": {k: v for k, v in good.items() if k != "view"},
        "method 'magic' is not one of": {
            **good,
            "measurements": [{**good["measurements"][0], "method": "magic"}],
        },
        "needs landmark names, measurements": {**good, "measurements": []},
        "input size": {**good, "input_size": [64, 64]},
    }
    for why, raw in bad.items():
        with pytest.raises(DocumentError) as caught:
            parse_document(raw if isinstance(raw, str) else json.dumps(raw), "m.onnx")
        message = str(caught.value)
        assert why in message and message.startswith("m.onnx: ") and "\n" not in message, message
    # through the predictor: a file whose document is of an unknown version is refused, one line
    path = toy_onnx(tmp_path / "v2.onnx", doc)
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps(bad["model document version 2 is not supported"])
    onnx.save(model, str(path))
    with pytest.raises(ModelRefusedError, match=r"v2.onnx: model document version 2 is not supported"):
        OnnxModel(path, verify=False)


def test_an_export_without_a_document_reads_through_the_loose_keys(models_dir: Path) -> None:
    """Exports that predate the document (the bundled set among them) keep working."""
    model = OnnxModel(models_dir / "toy.onnx")
    assert model.info.document is None and model.info.classes == ("dark", "mid", "bright")


def test_toy_angle_reaches_spinescan_predict_and_predict_py_from_the_document(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    """A plugin's new angle (T2-T8, the toy) is reported by the predictor and by predict.py in a
    process that never registered it: its definition travels in the model's document."""
    from toy_landmarks import T2_TILT, T8_TILT, TOY_ANGLE, write_toy_export

    from spinescan.radiograph.angle_defs import ANGLES

    folder = write_toy_export(tmp_path / "toy")
    assert TOY_ANGLE.name not in ANGLES  # registered only while the document was made
    film = images["dark.png"]
    out = io_json(predictor.main, [str(film), "--models", str(folder), "--json"])
    script = write_standalone(folder)
    env = _blocked_env(tmp_path, HEAVY + ",spinescan,spinescan_plugins,click,pluggy")
    proc = subprocess.run(
        [sys.executable, str(script), str(film), "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for (r,) in (out, json.loads(proc.stdout)):
        names = ["thoracic_kyphosis_deg", "lumbar_lordosis_deg", TOY_ANGLE.name]
        assert list(r["measurements"]) == names and r["plausibility"]["severity"] == "ok", r
        # the letterbox keeps angles: the toy angle is the tilts the fixed output gave T2 and T8
        assert abs(r["measurements"][TOY_ANGLE.name] - (T8_TILT - T2_TILT)) < 0.01
        # and the angle between the reported T2 superior / T8 inferior points (rounded to 0.01 px)
        want = _endplates(r["landmarks"], (1, "superior"), (7, "inferior"))
        assert abs(r["measurements"][TOY_ANGLE.name] - want) < 0.2
        assert r["label"] == "healthy"
    assert out[0]["measurements"] == json.loads(proc.stdout)[0]["measurements"]


def io_json(main, argv: list[str]) -> list[dict]:
    """``main(argv)``'s stdout as JSON (exit code 0)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return json.loads(buf.getvalue())
