"""Experiment tracking (``tracking.backend: mlflow``): every finished run of a study or a sweep
logged to MLflow with its parameters, per-epoch and final metrics and its files, plus one run for
the study (or sweep) holding the report and its figures as artifacts.

Logging happens on the driver once training is over, from the run directories, so it is the same
for every executor, and repeatable: an MLflow run is tagged with its distillbench identity (model,
seed, fingerprint) and never logged twice, so a resumed study logs only its new runs. In a sweep,
test accuracy is logged for the selected point of each model only, as in sweep.json.

MLflow is an optional extra (``pip install 'distillbench[mlflow]'``). The default store is local:
``sqlite:///mlruns/mlflow.db``, artifacts in ``mlruns/artifacts`` (MLflow 3 retired the plain
``./mlruns`` file store); ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`` shows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillbench.config import StudyConfig
from distillbench.errors import UserError
from distillbench.study.layout import RunLayout, SweepLayout
from distillbench.study.plan import RunSpec
from distillbench.study.store import RunStore

INSTALL_HINT = "pip install 'distillbench[mlflow]' (mlflow-skinny with sqlalchemy and alembic, or the full mlflow)"
DEFAULT_STORE = Path("mlruns")
IDENTITY_TAG = "distillbench.identity"
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "lr")


@dataclass
class TrackedRun:
    """One finished run to log: where it is, and what else describes it (a sweep's point)."""

    store: RunStore
    run: RunSpec
    params: dict[str, Any] = field(default_factory=dict)
    test: bool = True  # whether its test accuracy may be logged (a sweep: selected points only)


def tracking_uri(cfg: StudyConfig) -> str:
    """``tracking.uri``, or the local default store (created here)."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    DEFAULT_STORE.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"


def _artifact_location(uri: str) -> str | None:
    """A sqlite store's artifacts go next to its database (MLflow's own default is ./mlruns of
    whatever directory the command runs in); a tracking server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()


def _client(cfg: StudyConfig) -> tuple[Any, str]:
    """An MLflow client on the configured store, and the id of the study's experiment."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError(
            f"tracking.backend mlflow needs MLflow, an optional extra that is not installed: {INSTALL_HINT}. Or set "
            "tracking.backend none."
        ) from None
    uri = tracking_uri(cfg)
    name = cfg.tracking.experiment or cfg.name
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return client, experiment.experiment_id
        return client, client.create_experiment(name, artifact_location=_artifact_location(uri))
    except Exception as exc:  # MLflow raises many types for an unusable store: each is this error
        raise UserError(
            f"The MLflow tracking store {uri} could not be used ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "Check tracking.uri (a sqlite:/// path you can write, or a tracking server's http:// address)."
        ) from None


def check_tracking(cfg: StudyConfig) -> None:
    """Stop before any training if the tracking store cannot be used (MLflow missing, bad URI)."""
    if cfg.tracking.backend == "mlflow":
        _client(cfg)


def _logged(client: Any, experiment: str) -> dict[str, Any]:
    """The runs already in the experiment, by identity."""
    runs, token = {}, None
    while True:
        page = client.search_runs([experiment], max_results=1000, page_token=token)
        runs.update({run.data.tags.get(IDENTITY_TAG): run for run in page})
        token = page.token
        if not token:
            return runs


def _identity(tracked: TrackedRun) -> str:
    return f"{tracked.run.model}/{tracked.run.seed}/{tracked.run.fingerprint}"


def _log_run(client: Any, experiment: str, tracked: TrackedRun) -> None:
    from mlflow.entities import Metric, Param, RunTag

    store, run = tracked.store, tracked.run
    record, history = store.record(run.model, run.seed), store.history(run.model, run.seed)
    params = {
        "model": run.model,
        "seed": run.seed,
        "arch": record.get("arch"),
        "teachers": ",".join(run.teachers) or "-",
        **{f"recipe.{k}": v for k, v in (record.get("recipe") or {}).items()},
        **tracked.params,
    }
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, float(row[name]), now, int(row["epoch"]))
        for row in history
        for name in EPOCH_METRICS
        if name in row
    ]
    final = {
        "best_val_accuracy": store.kept_val_accuracy(run.model, run.seed),  # None: no validation split
        "best_epoch": record["best_epoch"],
        "epochs_trained": record["epochs_trained"],
        "train_seconds": record["train_seconds"],
    }
    if tracked.test:
        final["test_accuracy"] = store.test_accuracy(run.model, run.seed)
    metrics += [Metric(name, float(value), now, 0) for name, value in final.items() if value is not None]
    tags = {IDENTITY_TAG: _identity(tracked), "distillbench.fingerprint": run.fingerprint}
    created = client.create_run(experiment, run_name=f"{run.model} seed {run.seed}", tags=tags)
    run_id = created.info.run_id
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(key, str(value)) for key, value in params.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    paths = store.paths(run.model, run.seed)
    for path in (paths.record, paths.history):
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)


def log_to_mlflow(cfg: StudyConfig, runs: list[TrackedRun], summary: str, files: list[Path]) -> int:
    """Log the runs not logged yet, then a run named ``summary`` with ``files`` (a file or a
    directory each) as artifacts; returns how many runs were logged."""
    client, experiment = _client(cfg)
    logged = _logged(client, experiment)
    new = [tracked for tracked in runs if _identity(tracked) not in logged]
    for tracked in new:
        _log_run(client, experiment, tracked)
    for tracked in runs:  # logged before its point was selected (a resumed sweep): its test accuracy now
        earlier = logged.get(_identity(tracked))
        if earlier is not None and tracked.test and "test_accuracy" not in earlier.data.metrics:
            accuracy = tracked.store.test_accuracy(tracked.run.model, tracked.run.seed)
            client.log_metric(earlier.info.run_id, "test_accuracy", accuracy)
    # One summary run per study or sweep, its artifacts replaced by each later invocation's.
    identity = f"summary/{summary}"
    found = client.search_runs([experiment], filter_string=f"tags.`{IDENTITY_TAG}` = '{identity}'", max_results=1)
    run_id = (
        found[0].info.run_id
        if found
        else client.create_run(experiment, run_name=summary, tags={IDENTITY_TAG: identity}).info.run_id
    )
    for path in files:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        elif path.exists():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    print(
        f"MLflow: {len(new)} new runs logged to {tracking_uri(cfg)} (experiment {cfg.tracking.experiment or cfg.name})"
    )
    return len(new)


def track_study(cfg: StudyConfig, layout: RunLayout, store: RunStore, runs: list[RunSpec]) -> None:
    """Every finished run of a study, and its report and figures."""
    tracked = [TrackedRun(store, run) for run in runs if store.state(run)[0] == "finished"]
    files = [layout.results, layout.report, layout.html_report, layout.figures]
    log_to_mlflow(cfg, tracked, f"study {cfg.name}", files)


def track_sweep(cfg: StudyConfig, layout: SweepLayout, studies: list[Any], results: dict[str, Any]) -> None:
    """Every distinct run of a sweep once, with the axis values of the points it serves (only
    those on which they agree: a teacher shared by a kd.* grid has none); test accuracy only for
    the selected points (sweep.json's ``models``)."""
    selected = {
        (key, point)
        for key, model in results["models"].items()
        if model["selected"]
        for point in model["selected"]["points"]
    }
    served: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    tracked: dict[tuple[str, int, str], TrackedRun] = {}
    for point, study in zip(results["points"], studies):
        for run in study.plan.runs:
            if study.store.state(run)[0] != "finished":
                continue
            identity = (run.model, run.seed, run.fingerprint)
            served.setdefault(identity, []).append(point)
            test = (run.model, point["name"]) in selected or (identity in tracked and tracked[identity].test)
            tracked[identity] = TrackedRun(study.store, run, {}, test)
    for identity, points in served.items():
        values = {
            axis: value
            for axis, value in points[0]["values"].items()
            if all(p["values"][axis] == value for p in points)
        }
        tracked[identity].params = {
            "points": points[0]["name"] if len(points) == 1 else f"{len(points)} points",
            **{f"axis.{axis}": value for axis, value in values.items()},
        }
    files = [layout.results, layout.report, layout.html_report, layout.figures]
    log_to_mlflow(cfg, list(tracked.values()), f"sweep {cfg.name}", files)
