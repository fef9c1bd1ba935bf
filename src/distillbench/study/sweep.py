"""``distillbench sweep``: every combination of the ``sweep.axes`` values is a study (a *point*);
runs that several points need are trained once; each model's setting is selected on validation
accuracy, and the test set is read once per model, for its selected point.

A sweep directory (``SweepLayout``) holds ``sweep.yaml`` (the config the grid was made from), one
study directory per point under ``points/`` (its config.yaml and plan.json: ``distillbench report``
works on it), and every run once in the shared pool ``runs/<model>/seed-<s>-<fingerprint>/``. A run's
directory is named by its identity, so a teacher, whose fingerprint does not depend on ``kd.*``, is
trained once per seed however many points distil it, and a sweep that is run again resumes.

Executors: ``local`` trains point after point with the study's own executor (``perf.workers``,
``perf.batched``); ``ray`` sends every distinct run of every point to a Ray cluster at once
(``study.ray_executor``), teachers before their students.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillbench.atomic import write_json, write_text
from distillbench.config import StudyConfig, SweepConfig, config_to_yaml, load_config, with_values
from distillbench.data import StudyData, load_study_data
from distillbench.errors import UserError
from distillbench.evaluation.significance import mean_std_ci
from distillbench.study.layout import SweepLayout
from distillbench.study.lock import directory_lock
from distillbench.study.plan import Plan, RunKey, RunSpec
from distillbench.study.resolve import check_names
from distillbench.study.runner import Study
from distillbench.study.store import RunStore
from distillbench.training.runtime import Runtime

SWEEP_FORMAT = 1
SELECTION_RULE = (
    "Each model's setting is the grid point with the highest mean validation accuracy over the seeds "
    "(ties: the earlier point). Only the selected point's test predictions are read: the test set is "
    "scored once per model, never used to choose."
)


@dataclass(frozen=True)
class Point:
    """One grid point: the axes' values and the study config they make."""

    name: str
    values: dict[str, Any]
    cfg: StudyConfig


def _value_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "_"


def _axis_labels(keys: list[str]) -> dict[str, str]:
    """Each axis by the last part of its key (``temperature``), or the whole key where two share it."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: _value_text(short if last.count(short) == 1 else key) for key, short in zip(keys, last)}


def grid_points(cfg: StudyConfig) -> list[Point]:
    """Every combination of ``cfg.sweep.axes``, in grid order (the last axis varies fastest), each a
    validated study config with no axes of its own."""
    axes = cfg.sweep.axes
    if not axes:
        raise UserError(
            "The sweep has no axes. Give them in the config (sweep: {axes: {kd.temperature: [1, 3, 6]}}) or on "
            "the command line, e.g. --grid kd.temperature=[1,3,6] --grid kd.alpha=[0.3,0.7]."
        )
    base = cfg.model_copy(update={"sweep": SweepConfig()})
    labels = _axis_labels(list(axes))
    points = []
    for combination in itertools.product(*axes.values()):
        values = dict(zip(axes, combination))
        name = ",".join(f"{labels[key]}={_value_text(value)}" for key, value in values.items())
        source = f"sweep point {name}"
        points.append(Point(name, values, check_names(with_values(base, values, source), source)))
    if len({point.name for point in points}) != len(points):
        raise UserError(
            f"sweep.axes: two values of an axis print the same ({', '.join(p.name for p in points)}); give "
            "values that differ as text."
        )
    return points


def union_plan(studies: list[Study]) -> tuple[Plan, dict[RunKey, tuple[Study, RunSpec]]]:
    """Every distinct run of the points' plans once, as one plan whose run names are unique across
    points (``<point>:<model>``), and where each came from. A run is the same run at two points when
    its model key and fingerprint are (its files are one directory of the pool)."""
    owners: dict[tuple[str, str], str] = {}  # (model, fingerprint) -> the plan's name for it
    placed: dict[RunKey, tuple[Study, RunSpec]] = {}
    runs = []
    for index, study in enumerate(studies):
        names: dict[RunKey, str] = {}
        for run in study.plan.runs:  # teachers before their students
            name = owners.setdefault((run.model, run.fingerprint), f"{index}:{run.model}")
            names[run.key] = name
            if name == f"{index}:{run.model}":
                teachers = tuple(names[(teacher, run.seed)] for teacher in run.teachers)
                runs.append(RunSpec(name, run.seed, run.fingerprint, teachers, run.arch))
                placed[(name, run.seed)] = (study, run)
    return Plan(tuple(runs)), placed


class Sweep:
    """A grid of studies sharing one pool of runs, in one output directory; ``run()`` resumes."""

    def __init__(self, cfg: StudyConfig, out: Path, data: StudyData | None = None):
        self.cfg = check_names(cfg)
        self.layout = SweepLayout(Path(out))
        self.points = grid_points(self.cfg)
        self.data = data if data is not None else load_study_data(cfg.data)
        self.studies: list[Study] = []

    def _make_studies(self, planned_runtime: Runtime | None) -> None:
        """One study per point, its runs planned for ``planned_runtime`` (a Ray cluster's) or this machine."""
        self.studies = [
            Study(point.cfg, self.layout.point(point.name), self.data, self.layout.pool, planned_runtime)
            for point in self.points
        ]
        for number, (point, study) in enumerate(zip(self.points, self.studies), 1):
            study.label = f"point {number}/{len(self.points)} {point.name}"

    def run(self) -> dict[str, Any]:
        """Train every point's unfinished runs, then write sweep.json and the sweep's report; the
        sweep's directory is locked against other writers meanwhile."""
        self._check_out()
        with directory_lock(self.layout.root, "sweep"):
            return self._run()

    def _run(self) -> dict[str, Any]:
        from distillbench.study.tracking import track_sweep

        started = time.perf_counter()
        executor = self.cfg.sweep.executor
        ray_executor = self._ray_executor() if executor == "ray" else None  # connects first: fail fast
        self._make_studies(ray_executor.runtime if ray_executor is not None else None)
        self._preflight()
        write_text(self.layout.config, config_to_yaml(self.cfg))
        for study in self.studies:
            study.start(preflight=False)
        plan, placed = union_plan(self.studies)
        asked = sum(len(study.plan.runs) for study in self.studies)
        print(
            f"Sweep over {', '.join(self.cfg.sweep.axes)}: {len(self.points)} points x {len(self.cfg.seeds)} seeds, "
            f"{len(plan.runs)} distinct runs ({asked} asked for), executor {executor}",
            flush=True,
        )
        if self.data.synthetic:
            print(f"NOTE: the data is GENERATED, not a real dataset: {self.data.source}.", flush=True)
        if ray_executor is not None:
            ray_executor.execute(plan, lambda run: placed[run.key][0].begin(placed[run.key][1]), placed)
        else:
            for study in self.studies:
                print(f"##### {study.label} #####", flush=True)
                study.execute()
                study.release()
        for study in self.studies:  # each shared run is timed once: its record then has it
            study.time_efficiency()
            study.release()
        results = finish_sweep(self.layout.root)
        if self.cfg.tracking.backend != "none":
            track_sweep(self.cfg, self.layout, self.studies, results)
        print(f"Sweep finished in {time.perf_counter() - started:.1f}s; report: {self.layout.report}", flush=True)
        return results

    def _ray_executor(self) -> Any:
        from distillbench.study.ray_executor import RayExecutor

        return RayExecutor(self.cfg, self.data, self.cfg.sweep.address)

    def _check_out(self) -> None:
        if (self.layout.root / "plan.json").exists():
            raise UserError(
                f"{self.layout.root} holds a study (it has plan.json), not a sweep; give the sweep its own --out."
            )

    def _preflight(self) -> None:
        """The inputs of every point checked once per distinct set of weights and caches."""
        checked: set[str] = set()
        for study in self.studies:
            inputs = json.dumps([study.cfg.weights, str(study.cfg.perf.cache_dir)])
            if inputs not in checked:
                study.preflight()
                checked.add(inputs)


def collect_sweep(root: Path) -> dict[str, Any]:
    """sweep.json's content: every point's validation results, and per model the selected point
    with its test results (the only test predictions read)."""
    layout = SweepLayout(Path(root))
    if not layout.config.is_file():
        raise UserError(f"{root} is not a sweep's output directory: it has no sweep.yaml. Give the --out of a sweep.")
    cfg = load_config(layout.config)
    points = grid_points(cfg)
    stores: list[RunStore] = []
    plans: list[list[RunSpec]] = []
    for point in points:
        store = RunStore(layout.point(point.name))
        plans.append(store.read_plan())
        stores.append(store)
    models = list(dict.fromkeys(run.model for plan in plans for run in plan))
    entries = []
    data_source, synthetic, weights = None, False, {}
    for point, store, plan in zip(points, stores, plans):
        per_model: dict[str, Any] = {}
        for run in plan:
            entry = per_model.setdefault(run.model, {"seeds": {}, "fingerprints": {}})
            entry["fingerprints"][str(run.seed)] = run.fingerprint
            if store.state(run)[0] != "finished":
                continue
            record = store.record(run.model, run.seed)
            data_source, synthetic = record.get("data_source"), bool(record.get("synthetic_data"))
            if record.get("weights"):
                weights[record["arch"]] = record["weights"]
            entry["seeds"][str(run.seed)] = {
                "val_accuracy": store.kept_val_accuracy(run.model, run.seed),
                "best_epoch": record["best_epoch"],
                "epochs_trained": record["epochs_trained"],
                "run": str(store.paths(run.model, run.seed).root.relative_to(layout.root)),
            }
        for entry in per_model.values():
            values = [seed["val_accuracy"] for seed in entry["seeds"].values()]
            mean, std, _ = mean_std_ci(values) if values else (None, None, None)
            entry.update(mean_val_accuracy=mean, val_accuracy_std=std, complete=len(values) == len(cfg.seeds))
        entries.append(
            {"name": point.name, "values": point.values, "directory": f"points/{point.name}", "models": per_model}
        )
    return {
        "format": SWEEP_FORMAT,
        "name": cfg.name,
        "axes": cfg.sweep.axes,
        "seeds": cfg.seeds,
        "executor": cfg.sweep.executor,
        "data_source": data_source,
        "synthetic_data": synthetic,
        "weights": weights,
        "selection_rule": SELECTION_RULE,
        "points": entries,
        "models": {key: _select(key, entries, stores, cfg) for key in models},
    }


def _select(key: str, points: list[dict[str, Any]], stores: list[RunStore], cfg: StudyConfig) -> dict[str, Any]:
    """The point whose ``key`` runs have the best mean validation accuracy, why, its test results,
    and the distinct settings of ``key`` ranked (points whose runs are the same runs share a rank)."""
    variants: dict[str, list[int]] = {}
    for index, point in enumerate(points):
        if key in point["models"]:
            identity = json.dumps(point["models"][key]["fingerprints"], sort_keys=True)
            variants.setdefault(identity, []).append(index)
    ranking = []
    for indexes in variants.values():
        entry = points[indexes[0]]["models"][key]
        ranking.append(
            {
                "points": [points[i]["name"] for i in indexes],
                "mean_val_accuracy": entry["mean_val_accuracy"],
                "val_accuracy_std": entry["val_accuracy_std"],
                "complete": entry["complete"],
            }
        )
    complete = [r for r in ranking if r["complete"]]
    complete.sort(key=lambda r: -r["mean_val_accuracy"])  # stable: ties keep grid order
    unfinished = len(ranking) - len(complete)
    ranking = complete + [r for r in ranking if not r["complete"]]
    result: dict[str, Any] = {"varies": len(variants) > 1, "ranking": ranking, "selected": None, "waiting": None}
    if unfinished:  # a pick among some settings could change once the rest finish: no test set yet
        result["waiting"] = f"{unfinished} of {len(ranking)} settings unfinished; selection once the sweep completes"
        return result
    best = complete[0]
    index = next(i for i, p in enumerate(points) if p["name"] == best["points"][0])
    if len(variants) == 1:
        why = "the axes do not change this model's runs: one setting, nothing to choose"
    else:
        why = f"highest mean validation accuracy over {len(cfg.seeds)} seeds ({best['mean_val_accuracy']:.4f})"
        why += f"; next best {complete[1]['points'][0]} ({complete[1]['mean_val_accuracy']:.4f})"
    test = {str(seed): stores[index].test_accuracy(key, seed) for seed in cfg.seeds}
    mean, std, ci = mean_std_ci(list(test.values()))
    result["selected"] = {
        "point": best["points"][0],
        "points": best["points"],
        "values": points[index]["values"],
        "mean_val_accuracy": best["mean_val_accuracy"],
        "why": why,
        "test_accuracy": {"per_seed": test, "mean": mean, "std": std, "ci95": ci},
    }
    return result


def finish_sweep(root: Path) -> dict[str, Any]:
    """Collect the sweep into sweep.json and write its report."""
    from distillbench.reporting.sweep import write_sweep_report

    layout = SweepLayout(Path(root))
    results = collect_sweep(layout.root)
    write_json(layout.results, results)
    write_sweep_report(layout.root, results)
    return results
