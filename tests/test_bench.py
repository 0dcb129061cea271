"""The benchmark: aggregation, winners, the paired study and the report, on fake runs (fast), and
one CI-sized `spinescan bench` on the phantom fixture (slow)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from spinescan import metrics
from spinescan.atomic import atomic_write_json
from spinescan.data.datasets import Sample
from spinescan.evaluation import bench
from spinescan.evaluation.leaderboard import LEADERBOARD_SCHEMA, Leaderboard, load_leaderboard
from spinescan.evaluation.study import combine_specialists
from spinescan.training import runs
from spinescan.training.runconfig import RunConfig
from spinescan.training.runs import RunDir
from spinescan.zoo.registry import get_spec

CLASSES3 = ("healthy", "kyphosis", "lordosis")


def _onehot(pred: Sequence[str], classes: Sequence[str], confidence: float = 0.9) -> np.ndarray:
    k = len(classes)
    probs = np.full((len(pred), k), (1 - confidence) / (k - 1))
    for i, p in enumerate(pred):
        probs[i, classes.index(p)] = confidence
    return probs


def fake_run(
    runs_dir: Path,
    model: str,
    seed: int,
    test: tuple[list[str], list[str], np.ndarray],
    val: tuple[list[str], list[str], np.ndarray],
    info: dict | None = None,
) -> Path:
    """A finished run directory in the layout spinescan.training.runs reads (no model file)."""
    spec = get_spec(model)
    run_dir = runs_dir / model / f"fake-s{seed}"
    run_dir.mkdir(parents=True)
    rundir = RunDir(run_dir)
    rundir.write_config(
        RunConfig(run_id=run_dir.name, model=model, hparams=spec.train, spec=spec.summary(), seed=seed)
    )
    rundir.write_predictions(spec.classes, {"val": val, "test": test})
    atomic_write_json(
        rundir.file(RunDir.METRICS),
        {
            "finished": True,
            "train_seconds": 10.0 + seed,
            "seconds_to_target": None,
            "epochs_to_target": None,
            "params": 1234,
            "target_accuracy": 0.9,
            "epochs_run": 3,
            "best_epoch": 2,
            **(info or {}),
        },
    )
    return run_dir


def _val(model: str, accuracy: float, n: int = 20) -> tuple[list[str], list[str], np.ndarray]:
    """Validation predictions of a given accuracy (first class always the truth)."""
    classes = get_spec(model).classes
    n_right = round(accuracy * n)
    labels = [classes[0]] * n
    preds = [classes[0]] * n_right + [classes[1]] * (n - n_right)
    return [f"val/{model}_{i}.png" for i in range(n)], labels, _onehot(preds, classes)


class FakeAccess:
    """Stands in for bench.ModelAccess: specialists' P(condition) on other classes' images."""

    def __init__(self, positive_prob: dict[str, dict[str, float]]) -> None:
        self.positive_prob = positive_prob

    def predict(self, record: bench.RunRecord, samples: Sequence[Sample]) -> np.ndarray:
        own = dict(zip(record.test.files, record.test.probs, strict=True))
        pos = record.classes.index(next(c for c in record.classes if c != "healthy"))
        rows = []
        for s in samples:
            if s.rel in own:
                rows.append(own[s.rel])
            else:
                p = self.positive_prob.get(record.model, {}).get(s.rel, 0.1)
                row = np.zeros(2)
                row[pos], row[1 - pos] = p, 1 - p
                rows.append(row)
        return np.array(rows)

    def timing(self, record: bench.RunRecord, samples: Sequence[Sample]) -> dict:
        return {"inference_ms": 1.5, "preprocess_ms": 0.5}


def _study_fixture(tmp_path: Path) -> tuple[list[bench.RunRecord], dict[str, Sample]]:
    """One seed; 10 test images per class with hand-made errors (see the test for the counts)."""
    files = {c: [f"lateral/{c}/{c[0]}{i}.png" for i in range(10)] for c in CLASSES3}
    samples = {
        f: Sample(Path(f), f, c, "lateral", f, {"framing": "crop" if i % 2 else "full"})
        for c in CLASSES3
        for i, f in enumerate(files[c])
    }
    # Generalist: kyphosis k0-k3 called healthy, lordosis l0 called kyphosis (25/30 right).
    g_files = [f for c in CLASSES3 for f in files[c]]
    g_labels = [samples[f].label for f in g_files]
    g_pred = list(g_labels)
    for i in range(4):
        g_pred[10 + i] = "healthy"
    g_pred[20] = "kyphosis"
    # Kyphosis specialist: h0 called kyphosis (19/20). Lordosis specialist: all right.
    k_files = files["healthy"] + files["kyphosis"]
    k_labels = [samples[f].label for f in k_files]
    k_pred = list(k_labels)
    k_pred[0] = "kyphosis"
    l_files = files["healthy"] + files["lordosis"]
    l_labels = [samples[f].label for f in l_files]
    runs_dir = tmp_path / "runs"
    dirs = [
        fake_run(
            runs_dir, "generalist", 0, (g_files, g_labels, _onehot(g_pred, CLASSES3)), _val("generalist", 0.8)
        ),
        fake_run(
            runs_dir,
            "kyphosis",
            0,
            (k_files, k_labels, _onehot(k_pred, ("healthy", "kyphosis"))),
            _val("kyphosis", 0.9),
        ),
        fake_run(
            runs_dir,
            "lordosis",
            0,
            (l_files, l_labels, _onehot(l_labels, ("healthy", "lordosis"))),
            _val("lordosis", 0.9),
        ),
    ]
    return [bench.load_record(d) for d in dirs], samples


def test_paired_study_gives_the_hand_counted_answer(tmp_path: Path) -> None:
    records, samples = _study_fixture(tmp_path)
    specs = [get_spec(n) for n in ("generalist", "kyphosis", "lordosis")]
    # The kyphosis specialist also fires (0.8) on healthy h0; elsewhere specialists say 0.1.
    access = FakeAccess({"kyphosis": {}, "lordosis": {}})
    result = bench.evaluate(records, specs=specs, samples=samples, access=access, n_boot=300)
    study = result.study
    assert study["generalist"] == "generalist"
    comps = {c["specialist"]: c for c in study["comparisons"]}
    k = comps["kyphosis"]
    assert k["n_images"] == 20 and k["positive_class"] == "kyphosis"
    assert k["specialist_accuracy"] == pytest.approx(19 / 20)
    assert k["generalist_accuracy"] == pytest.approx(16 / 20)  # k0-k3 wrong; l0 is not in this task
    assert k["difference"] == pytest.approx(0.15)
    assert (k["mcnemar"]["only_specialist_correct"], k["mcnemar"]["only_generalist_correct"]) == (4, 1)
    assert k["mcnemar"]["p_value"] == pytest.approx(0.375)  # 2 * (1 + 5) / 32
    assert k["difference_ci"][0] <= 0.15 <= k["difference_ci"][1]
    lo = comps["lordosis"]
    assert (lo["specialist_accuracy"], lo["generalist_accuracy"]) == (1.0, pytest.approx(19 / 20))
    assert lo["mcnemar"]["p_value"] == 1.0
    dep = study["deployment"]
    assert dep["n_images"] == 30
    # Combined: h0 -> kyphosis (wrong), everything else right = 29/30; generalist 25/30.
    assert dep["combined_accuracy"] == pytest.approx(29 / 30)
    assert dep["generalist_accuracy"] == pytest.approx(25 / 30)
    assert (dep["mcnemar"]["only_specialist_correct"], dep["mcnemar"]["only_generalist_correct"]) == (5, 1)
    assert dep["mcnemar"]["p_value"] == pytest.approx(metrics.mcnemar_exact_p(5, 1))
    assert np.array(dep["combined_confusion_matrix"]).trace() == 29
    text = study["answer"]
    assert "0.950" in text and "0.800" in text and "0.967" in text
    assert "statistically significant" in text  # nothing here reaches p < 0.05


def test_combination_rule() -> None:
    probs = {"kyphosis": np.array([0.9, 0.6, 0.2, 0.7, 0.5]), "lordosis": np.array([0.1, 0.8, 0.3, 0.7, 0.5])}
    decision = combine_specialists(probs, list(CLASSES3), "healthy")
    # More confident positive wins; nothing above 0.5 (0.5 is not above) -> healthy; ties -> first.
    assert [CLASSES3[i] for i in decision] == ["kyphosis", "lordosis", "healthy", "kyphosis", "healthy"]


def test_entries_are_consistent_with_their_confusion_matrices(tmp_path: Path) -> None:
    records, samples = _study_fixture(tmp_path)
    specs = [get_spec(n) for n in ("generalist", "kyphosis", "lordosis")]
    result = bench.evaluate(
        records, specs=specs, samples=samples, access=FakeAccess({}), n_boot=200, by="framing"
    )
    for typed in result.models:
        entry = typed.to_dict()
        for run in entry["runs"]:
            cm = np.array(run["confusion_matrix"])
            assert run["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
            sens = np.diag(cm) / cm.sum(axis=1)
            for i, c in enumerate(entry["classes"]):
                assert run["sensitivity"][c] == pytest.approx(sens[i])
        assert entry["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in entry["runs"]]))
        assert np.array_equal(
            entry["confusion_matrix"], np.sum([r["confusion_matrix"] for r in entry["runs"]], 0)
        )
        lo, hi = entry["accuracy_ci"]
        assert lo <= entry["accuracy"] <= hi
        assert entry["inference_ms"] == 1.5
        # --by framing: the two subgroups partition the test images.
        groups = entry["subgroups"]
        assert set(groups) == {"crop", "full"}
        assert sum(np.sum(g["confusion_matrix"]) for g in groups.values()) == np.sum(
            entry["confusion_matrix"]
        )


def test_winners_are_chosen_on_validation_not_test(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    files = [f"t{i}.png" for i in range(20)]
    labels = ["healthy"] * 10 + ["kyphosis"] * 10
    good_test = _onehot(labels, ("healthy", "kyphosis"))
    bad_test = _onehot(["healthy"] * 20, ("healthy", "kyphosis"))
    # Seed 0: best on validation, worse on test. Seed 1: the reverse. Seed 2: ties seed 0 on
    # validation but reaches the target later.
    dirs = [
        fake_run(
            runs_dir,
            "kyphosis",
            0,
            (files, labels, bad_test),
            _val("kyphosis", 0.9),
            {"seconds_to_target": 5.0},
        ),
        fake_run(runs_dir, "kyphosis", 1, (files, labels, good_test), _val("kyphosis", 0.6)),
        fake_run(
            runs_dir,
            "kyphosis",
            2,
            (files, labels, good_test),
            _val("kyphosis", 0.9),
            {"seconds_to_target": 9.0},
        ),
    ]
    records = [bench.load_record(d) for d in dirs]
    winners = bench.choose_winners(records)
    assert winners["kyphosis"].run_dir == dirs[0]
    result = bench.evaluate(records, specs=[get_spec("kyphosis")], n_boot=200)
    (entry,) = result.models
    assert entry.winner and entry.winner_run == dirs[0].as_posix()
    chosen = {m: r.run_dir.as_posix() for m, r in result.winners.items()}
    path = runs.write_winners(runs_dir, chosen)
    atomic_write_json(path, {**json.loads(path.read_text()), "scoliosis": "runs/scoliosis/x"})
    runs.write_winners(runs_dir, chosen)  # merging keeps other models' winners
    assert json.loads(path.read_text()) == {"kyphosis": dirs[0].as_posix(), "scoliosis": "runs/scoliosis/x"}


def _no_nan(name: str) -> None:
    raise AssertionError(f"leaderboard.json holds {name}")


def test_report_renders_from_the_leaderboard(tmp_path: Path) -> None:
    from spinescan.evaluation.report import write_report

    records, samples = _study_fixture(tmp_path)
    specs = [get_spec(n) for n in ("generalist", "kyphosis", "lordosis")]
    result = bench.evaluate(records, specs=specs, samples=samples, access=FakeAccess({}), n_boot=200)
    board = Leaderboard(
        created="now",
        spinescan_version="test",
        dataset={"root": "x"},
        protocol={"seeds": [0], "n_boot": 200},
        models=result.models,
        probes=(),
        study=result.study,
        winners={k: v.run_dir.as_posix() for k, v in result.winners.items()},
        winners_file="winners.json",
        elapsed_seconds=1.0,
        notes=(),
    )
    lb = board.to_dict()
    paths = write_report(lb, tmp_path / "report")
    text = paths["report"].read_text()
    assert "## Answer" in text and "| **generalist** |" in text and "McNemar" in text
    board.write(paths["leaderboard"])
    assert (
        json.loads(paths["leaderboard"].read_text(), parse_constant=_no_nan)["schema"] == LEADERBOARD_SCHEMA
    )
    assert load_leaderboard(paths["leaderboard"]).to_dict() == lb  # the typed loader reads it back
    pngs = sorted(p.name for p in paths["plots"].glob("*.png"))
    assert {"confusion_generalist.png", "roc_kyphosis.png", "reliability_lordosis.png", "study.png"} <= set(
        pngs
    )
    for name in pngs:
        assert f"plots/{name}" in text or name.startswith("curves_")


REQUIRED = (
    "name",
    "classes",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "auc",
    "accuracy_ci",
    "balanced_accuracy_ci",
    "macro_f1_ci",
    "auc_ci",
    "train_seconds",
    "seconds_to_target",
    "epochs_to_target",
    "winner",
    "params",
    "inference_ms",
)


@pytest.mark.slow
def test_bench_cli_on_phantoms_two_seeds(phantom_dir: Path, tmp_path: Path) -> None:
    """CI-sized: generalist + kyphosis specialist, 2 seeds, 1 epoch, 32 px, then a reusing --json run."""
    from click.testing import CliRunner

    from spinescan.cli import build_cli

    runs_dir, out = tmp_path / "runs", tmp_path / "report"
    args = [
        "bench",
        "generalist",
        "kyphosis",
        "--data",
        str(phantom_dir),
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--runs",
        str(runs_dir),
        "--bootstrap",
        "200",
        "--by",
        "framing",
        "-q",
    ]
    result = CliRunner().invoke(build_cli(), [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    lb = json.loads((out / "leaderboard.json").read_text())

    assert [e["name"] for e in lb["models"]] == ["generalist", "kyphosis"]
    for entry in lb["models"]:
        assert set(REQUIRED) <= set(entry)
        assert sorted(r["seed"] for r in entry["runs"]) == [0, 1]
        for run in entry["runs"]:
            cm = np.array(run["confusion_matrix"])
            assert cm.shape == (len(entry["classes"]),) * 2 and cm.sum() == run["n_test"] > 0
            assert run["accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-6)
            assert not run["reused"]
        assert entry["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in entry["runs"]]), abs=1e-6)
        assert entry["accuracy_ci"][0] <= entry["accuracy"] <= entry["accuracy_ci"][1]
        # The winner is the run with the best validation accuracy, whatever its test accuracy.
        best_val = max(r["val_accuracy"] for r in entry["runs"])
        winner = next(r for r in entry["runs"] if r["run_dir"] == lb["winners"][entry["name"]])
        assert winner["val_accuracy"] == best_val and entry["winner"]
        assert set(entry["subgroups"]) <= {"spine_crop", "torso", "fullframe"} and entry["subgroups"]
    assert json.loads((runs_dir / "winners.json").read_text()) == lb["winners"]
    # Each winning run carries the benchmark's figures for its model card.
    for entry in lb["models"]:
        evidence = json.loads((Path(lb["winners"][entry["name"]]) / "benchmark.json").read_text())
        assert evidence["figures"]["accuracy"] == entry["accuracy"]
        assert evidence["figures"]["n_test_total"] == entry["n_test_total"]
        assert set(evidence["subgroups"]) == set(entry["subgroups"])
        assert {p["probe"] for p in evidence["probes"]} == {
            p["probe"] for p in lb["probes"] if p["task"] == entry["name"]
        }
        assert evidence["protocol"]["seeds"] == [0, 1] and evidence["protocol"]["by"] == "framing"

    study = lb["study"]
    (comp,) = study["comparisons"]
    kyph = lb["models"][1]
    assert comp["specialist"] == "kyphosis" and comp["n_runs"] == 2
    assert comp["n_images"] == sum(r["n_test"] for r in kyph["runs"])  # same images as the specialist
    assert comp["specialist_accuracy"] == pytest.approx(kyph["accuracy"], abs=1e-6)
    assert 0.0 <= comp["mcnemar"]["p_value"] <= 1.0
    assert study["deployment"] is None  # no lordosis specialist in this benchmark
    assert "kyphosis specialist" in study["answer"]
    assert {p["task"] for p in lb["probes"]} == {"generalist", "kyphosis"}

    report = (out / "report.md").read_text()
    assert "## Answer" in report and "shortcut probe" in report and "Subgroups by `framing`" in report
    assert (out / "plots" / "confusion_generalist.png").stat().st_size > 1000

    # Again with --json: every run is reused and stdout is exactly the leaderboard.
    again = CliRunner().invoke(
        build_cli(), [*args, "--out", str(tmp_path / "again"), "--json", "--no-probes"]
    )
    assert again.exit_code == 0, again.output
    lb2 = json.loads(again.stdout)
    assert all(r["reused"] for e in lb2["models"] for r in e["runs"])
    assert lb2["winners"] == lb["winners"]


def test_unknown_subgroup_column_is_a_user_error(tmp_path: Path) -> None:
    from spinescan.errors import DataError

    records, samples = _study_fixture(tmp_path)
    with pytest.raises(DataError, match="framing"):  # the message lists the columns that exist
        bench.evaluate(
            records, specs=[get_spec("generalist")], samples=samples, by="no_such_column", n_boot=100
        )
