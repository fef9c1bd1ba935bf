"""The study: the plan's runs executed in order (teachers first), finished runs kept, then the report.

The pieces, one module each: ``recipe`` (each model's settings, resolved once), ``plan`` (which runs,
their identity), ``store`` (the study directory), ``scheduling`` (the order runs train in),
``execute`` (one run or batched group, built by ``RunExecutor.build``), ``workers`` and
``ray_executor`` (where units train).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from distillbench.atomic import remove_temporaries, write_json, write_text
from distillbench.config import StudyConfig, config_to_yaml
from distillbench.data import StudyData, load_study_data
from distillbench.errors import UserError
from distillbench.evaluation.efficiency import TIMING_FIELDS, time_models
from distillbench.models import BACKBONES
from distillbench.models.weights import check_backbone_weights
from distillbench.study.environment import describe_environment
from distillbench.study.execute import RunExecutor
from distillbench.study.lock import directory_lock
from distillbench.study.plan import Planner, RunSpec
from distillbench.study.progress import TimeLeft, run_seconds
from distillbench.study.recipe import model_recipes
from distillbench.study.resolve import check_names
from distillbench.study.scheduling import grouping_for
from distillbench.study.store import RunStore, sweep_of_point
from distillbench.study.workers import ProcessExecutor, SerialExecutor, resolve_workers
from distillbench.training.cache import TensorCache
from distillbench.training.runtime import Runtime, cpu_count


class Study:
    """One study in one output directory. ``run()`` is safe to repeat: finished runs are kept. With
    ``pool`` (a sweep's point), its runs live in that shared directory, found by identity."""

    def __init__(
        self,
        cfg: StudyConfig,
        out: Path,
        data: StudyData | None = None,
        pool: Path | None = None,
        planned_runtime: Runtime | None = None,
    ):
        """``planned_runtime``: where the runs will train, if not here (a Ray cluster's nodes): the
        plan's identities and the runs' numerics follow it; what is computed here (efficiency,
        reports) uses this machine's runtime."""
        self.cfg = check_names(cfg)
        self.perf = cfg.perf.effective()
        self.data = data if data is not None else load_study_data(cfg.data)
        self.pool = pool
        self.label = ""  # said before each run's line: a sweep's point
        self.runtime = Runtime.resolve(self.perf, cfg.device)
        self.store = RunStore(Path(out), pool)
        self.layout = self.store.layout
        self.cache = TensorCache.for_study(self.perf)
        self.recipes = model_recipes(self.cfg)
        self.executor = RunExecutor.build(self.cfg, self.data, self.store, self.runtime, self.cache, self.recipes)
        self.planned_runtime = planned_runtime or self.runtime
        self.plan = Planner(self.cfg, self.data.fingerprint, self.planned_runtime, self.recipes).plan()
        self.store.expect(list(self.plan.runs))
        self.time_left = TimeLeft(self.plan.runs)
        self.workers = 1  # training processes, once ``_executor`` has chosen them

    def preflight(self) -> None:
        """Everything checkable before the first epoch, so a bad input stops the study at once rather
        than after hours of training: the output and cache directories are writable, every backbone's
        weights and every released checkpoint or timm model's weights exist (downloaded if need be) and
        fit their architecture, every feature student's pair fits its method, and the tracking store
        (if any) is usable. The data were read and validated when the study was made."""
        _check_writable(self.layout.root, "the output directory (--out)")
        if self.perf.disk_cache:
            try:
                _check_writable(self.cache.directory, "perf.cache_dir")
                remove_temporaries(self.cache.directory, shared=True)
            except UserError as exc:  # the cache is an optimisation: without it the study computes more
                self.cache.disable(f"{exc} Training without the disk cache.")
        for arch, source in dict.fromkeys((r.arch, r.weights) for r in self.recipes.values() if r.weights):
            check_backbone_weights(BACKBONES[arch], source)
        self.executor.models.check_weights()  # released checkpoints and timm models' weights
        self.executor.inputs.check_feature_students()  # each feature method's pair fits it
        if self.cfg.tracking.backend != "none":
            from distillbench.study.tracking import check_tracking

            check_tracking(self.cfg)

    def run(self) -> dict[str, Any]:
        """Train what is not finished, then write results.json and the report; the study's directory
        is locked against other writers meanwhile."""
        from distillbench.study.results import finish_study

        started = time.perf_counter()
        self._check_kind()
        with directory_lock(self.layout.root):
            self.train()
            results = finish_study(self.layout.root)
            if self.cfg.tracking.backend != "none":
                from distillbench.study.tracking import track_study

                track_study(self.cfg, self.layout, self.store, list(self.plan.runs))
        print(f"Study finished in {time.perf_counter() - started:.1f}s; report: {self.layout.report}", flush=True)
        return results

    def _check_kind(self) -> None:
        if self.pool is not None:
            return
        if (self.layout.root / "sweep.yaml").exists():
            raise UserError(
                f"{self.layout.root} holds a sweep (it has sweep.yaml), not a study: `distillbench sweep` resumes it "
                "and `distillbench report` rebuilds its report; give a study its own --out."
            )
        sweep = sweep_of_point(self.layout.root)
        if sweep is not None:
            raise UserError(
                f"{self.layout.root} is a point of the sweep in {sweep}: `distillbench "
                "sweep` resumes it and `distillbench report` rebuilds its report; give a study its own --out."
            )
        if self.cfg.sweep.axes:
            print(
                f"NOTE: sweep.axes ({', '.join(self.cfg.sweep.axes)}) are set, but `run` trains the config as it is, "
                "one study; `distillbench sweep` trains the grid.",
                flush=True,
            )

    def start(self, preflight: bool = True) -> None:
        """Check the inputs (unless a sweep did for all its points) and write what the study's
        directory holds before any run trains."""
        self._check_kind()
        if preflight:
            self.preflight()
        config_text = config_to_yaml(self.cfg)
        # plan.json first: report judges each run against the fingerprints of the config it names.
        self.store.write_plan(config_text, list(self.plan.runs))
        write_text(self.layout.config, config_text)
        write_json(self.layout.environment, describe_environment(self.runtime.device))

    def train(self) -> None:
        """Every run of the plan finished on disk, efficiency included; no report."""
        self.start()
        if self.data.synthetic:
            print(f"NOTE: the data is GENERATED, not a real dataset: {self.data.source}.", flush=True)
        self.execute()
        self.time_efficiency()

    def execute(self) -> None:
        """Train the plan's unfinished runs on this machine (``perf.workers``, ``perf.batched``)."""
        missing = sum(self.store.state(run, checkpoint=True)[0] != "finished" for run in self.plan.runs)
        self._executor(missing).execute(self.plan, self.begin)

    def time_efficiency(self) -> None:
        """Efficiency of finished runs that lack it, measured here once training is over, alone on the
        CPU with the study's threads (``perf.threads``, default all CPUs), and added to their run.json.
        Runs whose models have one structure (``structure_key``) share one timing: the one of a run of
        this study timed before with the same threads, or one taken now, every distinct model's passes
        interleaved with the others' (``time_models``). ``timed_with`` names the model timed."""
        if not self.cfg.evaluation.efficiency:
            return
        with self.study_threads().thread_scope():
            costs, timings, to_time = self._efficiency_costs()
            if to_time:
                names = ", ".join(model_key for model_key, _ in to_time.values())
                print(f"Timing {len(to_time)} distinct model(s) on the CPU for Table 4: {names}", flush=True)
                models = [model for _, model in to_time.values()]
                measured = time_models(models, self.data.image_shape, self.cfg.evaluation.latency_repeats)
                for (key, (model_key, _)), timing in zip(to_time.items(), measured):
                    timings[key] = {**timing, "timed_with": model_key}
                    if timing["timing_busy"]:
                        print(
                            f"WARNING: the CPU was busy while {model_key} was timed (its repeats spread over "
                            f"{timing['timing_spread']:.0%} of their median): its latency and throughput in Table 4 are "
                            "unreliable; for speeds to compare, run the study where nothing else is running.",
                            flush=True,
                        )
            for run, cost in costs.items():
                self.store.update_record(run.model, run.seed, efficiency={**cost, **timings[cost["timing_key"]]})

    def _efficiency_costs(self) -> tuple[dict[RunSpec, dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
        """The counted efficiency of each finished run lacking it; the timings already in this study's
        records, by structure key (taken with the threads in use now); and the models still to time:
        structure key -> (the first run's model key, its model)."""
        costs: dict[RunSpec, dict[str, Any]] = {}
        timings: dict[str, dict[str, Any]] = {}
        to_time: dict[str, tuple[str, Any]] = {}
        for run in self.plan.runs:
            record = self.store.record(run.model, run.seed)
            known = record.get("efficiency") if record is not None else None
            if known is not None and known.get("timing_key") and known.get("cpu_threads") == torch.get_num_threads():
                timings.setdefault(known["timing_key"], {k: known[k] for k in TIMING_FIELDS if k in known})
            elif record is not None and known is None:
                costs[run], model = self.executor.efficiency_costs(run)
                to_time.setdefault(costs[run]["timing_key"], (run.model, model))
                self.executor.models.forget_seed(run.seed)  # the model to time stays referenced here
        return costs, timings, {key: pair for key, pair in to_time.items() if key not in timings}

    def study_threads(self) -> Runtime:
        """This machine's runtime with all the study's threads: for what runs after training."""
        return replace(self.runtime, threads=self.perf.threads or cpu_count())

    def release(self) -> None:
        """Free the models and cached tensors held in memory (a sweep's finished point)."""
        self.executor.models.forget_all()
        self.cache.memory.clear()

    def _where(self, run: RunSpec) -> str:
        seeds, per_seed = self.cfg.seeds, len(self.plan.runs) // len(self.cfg.seeds)
        number = self.plan.runs.index(run) % per_seed + 1
        where = f"seed {run.seed} ({seeds.index(run.seed) + 1}/{len(seeds)}), model {number}/{per_seed}: {run.model}"
        return f"{self.label}: {where}" if self.label else where

    def begin(self, run: RunSpec) -> bool:
        """Whether ``run`` needs training, judged now (its teachers are final), said in the log with
        the study's time left (``TimeLeft``, from the runs finished so far)."""
        state, why = self.store.state(run, checkpoint=True)
        self.time_left.look(self._seconds_if_finished)
        if state == "finished":
            self.time_left.finished(run, run_seconds(self.store.record(run.model, run.seed)))
            print(f"=== {self._where(run)}: already finished with this config; skipping ===", flush=True)
            return False
        left = self.time_left.line(self.workers)
        print(
            f"=== {self._where(run)}{f' (retraining: {why})' if why else ''} ==={f' {left}' if left else ''}",
            flush=True,
        )
        self.time_left.started_run(run)
        return True

    def _seconds_if_finished(self, run: RunSpec) -> float | None:
        if self.store.state(run)[0] != "finished":
            return None
        return run_seconds(self.store.record(run.model, run.seed))

    def _executor(self, todo: int) -> SerialExecutor | ProcessExecutor:
        """``perf.workers`` local processes (no more than there are runs to do), or this process when
        one is all there is. Either way every run trains with the study's thread count per run."""
        grouping = grouping_for(self.recipes, self.perf.batched)
        workers = self.workers = resolve_workers(self.perf, self.runtime.device, todo)
        if workers == 1:
            return SerialExecutor(self.executor.train_group, self.executor.models.forget_seed, grouping)
        print(f"Training on {workers} worker processes, {self.runtime.threads} torch thread(s) each", flush=True)
        cfg = self.cfg
        if self.perf.disk_cache and self.cache.directory is None:  # switched off by preflight: off there too
            cfg = cfg.model_copy(update={"perf": cfg.perf.model_copy(update={"disk_cache": False})})
        return ProcessExecutor(
            cfg, self.layout.root, self.data, self.runtime, workers, grouping, self.pool, self.store.fingerprints
        )


WRITE_PROBE_BYTES = 1 << 20  # an empty probe file passes on a full disk; a megabyte does not


def _check_writable(directory: Path, what: str) -> None:
    """Create ``directory`` and write (and fsync) a megabyte in it, or stop with what to do."""
    probe = directory / f".distillbench-write-test-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(bytes(WRITE_PROBE_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise UserError(
            f"{what}: cannot write to {directory} ({exc.strerror or type(exc).__name__}). Choose a directory "
            "you can write to, with free space, or fix its permissions."
        ) from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
