"""``distillbench sweep`` on this machine: the grid, runs shared between points, selection on
validation accuracy only (recomputed here from the run files), the report, resume after a kill, and
bad axes stopped with one paragraph."""

import csv
import json
import os
import signal
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from distillbench.cli import main
from distillbench.config import load_config
from distillbench.errors import UserError
from distillbench.study.sweep import grid_points
from tests.conftest import sweep_args

POINTS = ["temperature=1,alpha=0.2", "temperature=1,alpha=0.8", "temperature=4,alpha=0.2", "temperature=4,alpha=0.8"]


def _val_accuracy(run_dir):
    """The run's kept weights' validation accuracy: its best epoch's row of history.csv."""
    best = json.loads((run_dir / "run.json").read_text())["best_epoch"]
    with open(run_dir / "history.csv") as handle:
        return next(float(row["val_accuracy"]) for row in csv.DictReader(handle) if int(row["epoch"]) == best)


def _point_runs(out, point):
    """{(model, seed): run directory} of a point, from its plan.json and the pool's naming."""
    plan = json.loads((out / "points" / point / "plan.json").read_text())
    pool = (out / "points" / point / plan["pool"]).resolve()
    return {
        (r["model"], r["seed"]): pool / r["model"] / f"seed-{r['seed']}-{r['fingerprint'][:16]}" for r in plan["runs"]
    }


def test_the_grid_is_every_combination_with_its_own_config(tmp_path):
    cfg = load_config(None, ["sweep.axes={kd.temperature: [1, 4], kd.alpha: [0.2, 0.8]}", "train.epochs=2"])
    points = grid_points(cfg)
    assert [p.name for p in points] == POINTS
    assert [(p.cfg.kd.temperature, p.cfg.kd.alpha) for p in points] == [(1, 0.2), (1, 0.8), (4, 0.2), (4, 0.8)]
    assert all(p.cfg.train.epochs == 2 and p.cfg.sweep.axes == {} for p in points)
    with pytest.raises(UserError, match="no axes"):
        grid_points(load_config(None, []))


def test_teachers_train_once_per_seed_across_the_grid(local_sweep):
    runs = local_sweep / "runs"
    assert len(list((runs / "small_cnn").iterdir())) == 2  # one per seed, shared by the four points
    assert len(list((runs / "kd_small").iterdir())) == 8  # one per point and seed
    teachers = {_point_runs(local_sweep, point)[("small_cnn", 0)] for point in POINTS}
    assert len(teachers) == 1 and (next(iter(teachers)) / "predictions.npz").is_file()
    for point in POINTS:  # each student distilled that very checkpoint
        teacher = json.loads((_point_runs(local_sweep, point)[("small_cnn", 0)] / "run.json").read_text())
        student = json.loads((_point_runs(local_sweep, point)[("kd_small", 0)] / "run.json").read_text())
        assert student["teacher_checkpoints"] == {"small_cnn": teacher["checkpoint_sha256"]}


def test_selection_uses_validation_only_and_reads_the_test_set_once(local_sweep):
    results = json.loads((local_sweep / "sweep.json").read_text())
    means = {
        point: np.mean([_val_accuracy(_point_runs(local_sweep, point)[("kd_small", seed)]) for seed in (0, 1)])
        for point in POINTS
    }
    best = max(POINTS, key=lambda p: (means[p], -POINTS.index(p)))  # ties: the earlier point
    chosen = results["models"]["kd_small"]["selected"]
    assert chosen["point"] == best and results["models"]["kd_small"]["varies"]
    assert chosen["mean_val_accuracy"] == pytest.approx(means[best], abs=1e-6)
    ranked = [entry["points"][0] for entry in results["models"]["kd_small"]["ranking"]]
    assert sorted(ranked) == sorted(POINTS) and ranked[0] == best
    for point in results["points"]:  # every point's validation results; no test numbers
        assert point["models"]["kd_small"]["mean_val_accuracy"] == pytest.approx(means[point["name"]], abs=1e-6)
        assert "test" not in json.dumps(point)
    for seed in (0, 1):  # the selected point's test accuracy, from its predictions
        with np.load(_point_runs(local_sweep, best)[("kd_small", seed)] / "predictions.npz") as saved:
            accuracy = float((saved["logits"].argmax(1) == saved["y_true"]).mean())
        assert chosen["test_accuracy"]["per_seed"][str(seed)] == pytest.approx(accuracy)
    teacher = results["models"]["small_cnn"]
    assert not teacher["varies"] and len(teacher["ranking"]) == 1 and "nothing to choose" in teacher["selected"]["why"]


def test_the_report_has_heatmaps_and_the_ranked_table(local_sweep):
    text = (local_sweep / "sweep.md").read_text()
    assert "GENERATED DATA" in text and "test set is scored once per model" in text
    assert (
        f"**{json.loads((local_sweep / 'sweep.json').read_text())['models']['kd_small']['selected']['point']}** (selected)"
        in text
    )
    heatmap = local_sweep / "figures" / "sweep-kd_small-kd.temperature-kd.alpha.png"
    assert f"figures/{heatmap.name}" in text
    image = matplotlib.image.imread(heatmap)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert "data:image/png;base64," in (local_sweep / "sweep.html").read_text()
    # Each point is a study: its report rebuilds from the pool.
    assert main(["report", str(local_sweep / "points" / POINTS[0])]) == 0
    point = json.loads((local_sweep / "points" / POINTS[0] / "results.json").read_text())
    assert set(point["models"]) == {"small_cnn", "kd_small"}


def test_a_sweep_killed_midway_on_worker_processes_resumes_to_the_same_results(local_sweep, tmp_path, cifar_dir):
    """The tiny sweep on two worker processes (one thread per run, as in the local sweep), killed while
    its second point trains, then resumed in-process (one thread too): its pool holds the local sweep's
    runs, bit for bit, whichever process trained them."""
    out = tmp_path / "out"
    args = sweep_args(cifar_dir, tmp_path, out)
    sweep = subprocess.Popen(
        [sys.executable, "-m", "distillbench", *args, "--set", "perf.workers=2", "--set", "perf.threads=2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in sweep.stdout:  # kill it while the second point trains
        seen.append(line)
        if line.startswith("=== point 2/4") and "kd_small ===" in line:
            break
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.communicate(timeout=60)
    assert not (out / "sweep.json").exists(), "".join(seen)
    assert any("done: validation accuracy" in line for line in seen)
    assert not any("test accuracy" in line for line in seen)  # a sweep's log never shows the test set
    assert main(["report", str(out)]) == 0  # a partial sweep: rankings so far, nothing selected, no test set read
    partial = json.loads((out / "sweep.json").read_text())["models"]["kd_small"]
    assert partial["selected"] is None and "settings unfinished" in partial["waiting"]
    kept = {path: path.stat().st_mtime_ns for path in (out / "runs").glob("*/*/model.pt")}
    assert len(kept) >= 3  # both teachers and a student of point 1
    assert main(args) == 0
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items())  # kept, not retrained
    resumed = json.loads((out / "sweep.json").read_text())
    uninterrupted = json.loads((local_sweep / "sweep.json").read_text())
    assert resumed["models"] == uninterrupted["models"]
    for point in POINTS:
        for key_seed, run_dir in _point_runs(out, point).items():
            with (
                np.load(run_dir / "predictions.npz") as ours,
                np.load(_point_runs(local_sweep, point)[key_seed] / "predictions.npz") as theirs,
            ):
                np.testing.assert_array_equal(ours["logits"], theirs["logits"])
    assert len(list((out / "runs" / "small_cnn").iterdir())) == 2


@pytest.mark.parametrize(
    "grid, expected",
    [
        ("data.val_size=[100,200]", "a sweep cannot vary data"),
        ("kd.temprature=[1,2]", "did you mean kd.temperature"),
        ("kd.temperature=[]", "no values"),
        ("kd.temperature=[1,-1]", "kd.temperature: Input should be greater than or equal to 0.01"),
        ("kd.temperature=3", "expected KEY=[V1,V2,...]"),
        ("kd.temperature=[1,", "the value is not valid YAML"),
        ("zoo.kd_small.distill.temperature=[1,2]", "zoo.kd_small.distill holds a value ('kd')"),
    ],
)
def test_bad_axes_stop_with_one_paragraph(tmp_path, cifar_dir, capsys, grid, expected):
    args = [*sweep_args(cifar_dir, tmp_path, tmp_path / "out"), "--grid", grid]
    assert main(args) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out" / "runs").exists()


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path, cifar_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the [ray] extra sees
    assert main([*sweep_args(cifar_dir, tmp_path, tmp_path / "out"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "pip install 'distillbench[ray]'" in err and "--executor local" in err and "Traceback" not in err


def test_run_refuses_a_sweep_directory(local_sweep, tmp_path, cifar_dir, weight_files, capsys):
    from tests.conftest import study_args

    assert main(study_args(cifar_dir, weight_files, tmp_path / "cache", local_sweep, "models=[small_cnn]")) == 2
    assert "holds a sweep" in capsys.readouterr().err.replace("\n", " ")
    assert not (local_sweep / "plan.json").exists()
