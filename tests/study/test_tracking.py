"""MLflow tracking read back through MLflow's own client: every run with its per-epoch metrics,
parameters and files, the report's figures, nothing logged twice on resume; a sweep logs its
distinct runs once, test accuracy for the selected points only."""

import csv
import json

import pytest

from distillbench.cli import main
from tests.conftest import study_args, sweep_args

mlflow = pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")
from mlflow.tracking import MlflowClient  # noqa: E402

IDENTITY = "distillbench.identity"


def _runs(uri, experiment):
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client, client.search_runs([found.experiment_id], max_results=1000)


def test_a_study_logs_every_run_once(tmp_path, cifar_dir, weight_files):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = ["models=[small_cnn]", "seeds=[0,1]", "train.epochs=2", "data.train_limit=600", "data.val_size=100",
            "evaluation.efficiency=false", "tracking.backend=mlflow", f"tracking.uri={uri}", "tracking.experiment=t",
            "evaluation.figures=true"]  # fmt: skip
    out = tmp_path / "study"
    args = study_args(cifar_dir, weight_files, tmp_path / "cache", out, *sets)
    assert main(args) == 0
    assert main(args) == 0  # resumed: nothing new to log
    client, runs = _runs(uri, "t")
    logged = {run.data.tags[IDENTITY]: run for run in runs}
    assert len(runs) == 3 and "summary/study paper" in logged
    for seed in (0, 1):
        run = next(r for r in runs if r.data.params.get("model") == "small_cnn" and r.data.params["seed"] == str(seed))
        with open(out / "runs" / "small_cnn" / f"seed-{seed}" / "history.csv") as handle:
            history = list(csv.DictReader(handle))
        val = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [(m.step, m.value) for m in sorted(val, key=lambda m: m.step)] == [
            (int(row["epoch"]), pytest.approx(float(row["val_accuracy"]))) for row in history
        ]
        predictions = json.loads((out / "results.json").read_text())["models"]["small_cnn"]["seeds"]
        accuracy = next(p["test_accuracy"] for p in predictions if p["seed"] == seed)
        assert run.data.metrics["test_accuracy"] == pytest.approx(accuracy)
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"run.json", "history.csv"}
    assert all(run.info.artifact_uri.startswith((tmp_path / "artifacts").as_uri()) for run in runs)  # next to the db
    summary = logged["summary/study paper"].info.run_id
    assert {"report.md", "report.html", "results.json", "figures"} <= {a.path for a in client.list_artifacts(summary)}
    assert any(a.path.endswith(".png") for a in client.list_artifacts(summary, "figures"))


def test_a_sweep_logs_its_distinct_runs_and_test_accuracy_of_selected_points_only(tmp_path, cifar_dir):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    assert main(sweep_args(cifar_dir, tmp_path, out, "tracking.backend=mlflow", f"tracking.uri={uri}")) == 0
    _, runs = _runs(uri, "tiny")
    models = [run for run in runs if not run.data.tags[IDENTITY].startswith("summary/")]
    assert len(models) == 10  # 2 teachers + 4 points x 2 seeds, each once
    selected = json.loads((out / "sweep.json").read_text())["models"]["kd_small"]["selected"]["point"]
    students = [run for run in models if run.data.params["model"] == "kd_small"]
    assert {run.data.params["points"] for run in students if "test_accuracy" in run.data.metrics} == {selected}
    assert all("best_val_accuracy" in run.data.metrics for run in models)
    assert all("axis.kd.temperature" in run.data.params for run in students)
    teachers = [run for run in models if run.data.params["model"] == "small_cnn"]  # shared by every point
    assert all(run.data.params["points"] == "4 points" and "axis.kd.alpha" not in run.data.params for run in teachers)
