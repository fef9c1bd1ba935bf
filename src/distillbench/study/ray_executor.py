"""Runs as Ray tasks: a sweep's distinct runs trained across a Ray cluster, teachers before their
students, with no filesystem shared between the driver and the workers.

Every run becomes one task with its resource request (``perf.cpus_per_run``, ``perf.gpus_per_run``:
fractions let several small students share a GPU). The data is put in Ray's object store once. A
teacher's task returns its run's files and its logits on the training split; a student's task
receives both through the object store (the checkpoint for the record's teacher hashes, and for
teachers run online on augmented batches). A task trains in a temporary directory; only the driver
writes the sweep's directory, through the store. A task whose worker dies is retried by Ray
(``MAX_RETRIES``): a task writes nothing outside its temporary directory, so a retry starts clean.

Ray is an optional extra (``pip install 'distillbench[ray]'``); nodes need distillbench and its
dependencies installed, at the driver's version.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from distillbench.config import PerfConfig, StudyConfig
from distillbench.data import StudyData
from distillbench.errors import UserError
from distillbench.study.execute import RunExecutor
from distillbench.study.plan import Plan, RunKey, RunSpec
from distillbench.study.scheduling import Scheduler
from distillbench.study.store import RunFiles, RunStore
from distillbench.training.cache import TensorCache
from distillbench.training.runtime import Runtime

MAX_RETRIES = 3  # a task whose worker process or node dies is run again, this many times at most
INSTALL_HINT = "pip install 'distillbench[ray]' (or pip install 'ray[default]>=2.9')"


def import_ray() -> Any:
    """The ``ray`` module, or the one-paragraph error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(
            f"--executor ray needs Ray, an optional extra that is not installed: {INSTALL_HINT}. Or run the sweep "
            "on this machine with --executor local."
        ) from None
    return ray


def connect(address: str | None) -> tuple[Any, bool]:
    """Ray connected to ``address`` (auto, HOST:PORT, or None: a Ray instance started on this
    machine), and whether this call started the connection (and should end it)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    fix = (
        "Start the cluster (ray start --head on its head node), check the address (HOST:PORT of the head's GCS, "
        "port 6379 by default; a cluster with token authentication also needs RAY_AUTH_MODE=token and its token, "
        "as for any Ray client), or run on this machine with --executor local."
    )
    if address not in (None, "auto", "local"):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f"--address {address}: expected auto or HOST:PORT, e.g. 10.0.0.5:6379.")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise UserError(f"The Ray cluster at {address} is unreachable ({exc.strerror or exc}). {fix}") from None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"Could not connect to a Ray cluster at {address}: {exc}. {fix}") from None
    return ray, True


TaskResult = tuple[RunFiles, dict[str, torch.Tensor]]  # a run's files, and its logits for its students


def resolve_task_runtime(perf: PerfConfig, device: str, threads: int) -> Runtime:
    """A Ray task: the runtime ``perf`` and ``device`` resolve to on the node that runs it."""
    return Runtime.resolve(perf, device, threads)


def train_task(
    cfg: StudyConfig, data: StudyData, run: RunSpec, runtime: Runtime, teaches: bool, *teachers: TaskResult
) -> TaskResult:
    """A Ray task: train ``run`` of the study ``cfg`` with the planned ``runtime`` (the numerics its
    identity holds, never this node's own resolution of ``auto``) in a temporary directory holding its
    teachers' files and logits (``train_task`` results, in ``run.needs`` order); return the run's
    files and, if it ``teaches``, the logits its students distil (as cache entries: a student's task
    then computes nothing of its teachers)."""
    runtime.check_here()
    with tempfile.TemporaryDirectory(prefix="distillbench-task-") as directory:
        # Efficiency is timed by the driver once training is over: here other tasks share the node.
        cache = TensorCache.for_study(cfg.perf.effective())
        executor = RunExecutor.build(cfg, data, RunStore(Path(directory)), runtime, cache, say_test=False)
        for (key, seed), (files, logits) in zip(run.needs, teachers):
            executor.store.import_run(key, seed, files)
            cache.memory.update(logits)
        executor.train(run)
        logits = executor.inputs.students_logits(run.model, run.seed) if teaches else {}
        return executor.store.export_run(run.model, run.seed), logits


class RayExecutor:
    """Trains a plan's runs as Ray tasks, each as soon as its teachers are done."""

    def __init__(self, cfg: StudyConfig, data: StudyData, address: str | None):
        self.ray, self.owns_connection = connect(address)
        self.data = data
        perf = cfg.perf
        resources = self.ray.cluster_resources()
        gpus = perf.gpus_per_run
        if gpus is None:
            gpus = 1.0 if cfg.device != "cpu" and resources.get("GPU", 0) > 0 else 0.0
        for name, wanted in (("CPU", perf.cpus_per_run), ("GPU", gpus)):
            if wanted > resources.get(name, 0):
                problem = (
                    f"Each run asks Ray for {wanted:g} {name}(s) (perf.{name.lower()}s_per_run), but the cluster has "
                    f"{resources.get(name, 0):g} now"
                )
                if address in (None, "local"):  # the Ray instance on this machine: no node will join it
                    raise UserError(f"{problem}: no task could start. Lower perf.{name.lower()}s_per_run.")
                print(f"WARNING: {problem}; tasks wait until nodes with them join (an autoscaler adds them).")
        self.task = self.ray.remote(train_task)
        self.resources = dict(
            num_cpus=perf.cpus_per_run, num_gpus=gpus, max_retries=MAX_RETRIES, retry_exceptions=False
        )
        self.runtime = self._node_runtime(cfg)
        print(
            f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; each run asks for "
            f"{perf.cpus_per_run:g} CPU(s), {gpus:g} GPU(s)",
            flush=True,
        )

    def _node_runtime(self, cfg: StudyConfig) -> Runtime:
        """The runtime a task resolves on a node that has its resources (a GPU node resolves CUDA and
        bf16 where a CPU driver would plan fp32): the sweep plans its runs' identities with it, and
        every task trains with exactly it. Its threads: ``perf.cpus_per_run`` (whole CPUs)."""
        probe = self.ray.remote(resolve_task_runtime).options(**self.resources)
        threads = max(1, int(cfg.perf.cpus_per_run))
        try:
            runtime = self.ray.get(probe.remote(cfg.perf.effective(), cfg.device, threads))
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, UserError):
                raise UserError(f"A Ray node could not set up a run: {cause}") from None
            raise
        print(
            f"Ray: runs train on {runtime.device.type} in {runtime.precision}, {runtime.threads} thread(s) each",
            flush=True,
        )
        return runtime

    def execute(self, plan: Plan, begin: Callable[[RunSpec], bool], placed: dict[RunKey, tuple[Any, RunSpec]]) -> None:
        """Train ``plan``'s runs; ``placed`` maps each to (its study, its run there): the study's
        config trains it and the study's store receives its files."""
        ray = self.ray
        schedule = Scheduler(plan, begin, None)
        data = ray.put(self.data)
        shared: dict[RunKey, Any] = {}  # finished runs' files in the object store, for their students
        pending: dict[Any, RunSpec] = {}
        started = time.perf_counter()

        teachers = {need for run in plan.runs for need in run.needs}

        def result_of(key: RunKey) -> Any:
            if key not in shared:  # finished before this sweep started: its files; its logits are recomputed
                study, run = placed[key]
                shared[key] = ray.put((study.store.export_run(run.model, run.seed), {}))
            return shared[key]

        try:
            while True:
                while (unit := schedule.next_unit()) is not None:
                    study, run = placed[unit[0].key]
                    inputs = [result_of(need) for need in unit[0].needs]
                    task = self.task.options(name=f"{run.model} seed {run.seed}", **self.resources)
                    teaches = unit[0].key in teachers
                    pending[task.remote(study.cfg, data, run, self.runtime, teaches, *inputs)] = unit[0]
                if not pending:
                    break
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    union_run = pending.pop(ref)
                    study, run = placed[union_run.key]
                    try:
                        result = self._result(ref, study, run)
                    except (UserError, RuntimeError):
                        self._save_finished(pending, placed)  # "finished runs are saved" holds for them too
                        raise
                    study.store.import_run(run.model, run.seed, result[0])
                    if union_run.key in teachers:
                        shared[union_run.key] = ref  # files and logits stay in the object store
                    schedule.completed([union_run])
                    left = len(plan.runs) - len(schedule.done)
                    print(
                        f"[ray] {study.label}: {run.model} seed {run.seed} saved ({left} runs left, "
                        f"{time.perf_counter() - started:.0f}s)",
                        flush=True,
                    )
            schedule.check_finished()
        finally:  # after a failure or Ctrl-C, nothing more trains
            for ref in pending:
                ray.cancel(ref, force=True)
            if self.owns_connection:
                ray.shutdown()

    def _save_finished(self, pending: dict[Any, RunSpec], placed: dict[RunKey, tuple[Any, RunSpec]]) -> None:
        """Save the runs whose tasks have already succeeded, before the sweep stops."""
        if not pending:
            return
        done, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=0)
        for ref in done:
            study, run = placed[pending.pop(ref).key]
            try:
                study.store.import_run(run.model, run.seed, self.ray.get(ref)[0])
            except self.ray.exceptions.RayError:
                continue

    def _result(self, ref: Any, study: Any, run: RunSpec) -> TaskResult:
        """What a task returned, or its failure as the study's one-paragraph error."""
        ray = self.ray
        where = f"{run.model} (seed {run.seed}) of {study.label}"
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, UserError):
                raise UserError(
                    f"{where} failed: {cause} Finished runs are saved; fix this and run again to resume."
                ) from None
            if isinstance(cause, ImportError):  # the node has no distillbench, or another version
                raise UserError(
                    f"{where} failed on a Ray node that cannot import what the driver sent ({cause}). Install "
                    "distillbench and its dependencies, at the driver's version, on every node of the cluster, "
                    "then run again to resume."
                ) from None
            print(str(exc), file=sys.stderr)
            raise RuntimeError(f"{where} failed with a bug in distillbench (its traceback is above)") from None
        except ray.exceptions.RayError as exc:  # the worker or node died more than MAX_RETRIES times
            raise UserError(
                f"The Ray task training {where} failed {MAX_RETRIES + 1} times ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Finished runs are saved; check the cluster's "
                "nodes (memory, logs) and run again to resume."
            ) from None
