"""Executors: the plan's unfinished runs trained one after another in this process, or concurrently
on local worker processes, teachers always before their students.

``perf.workers`` picks: 1 trains in-process (today's order: seed by seed, teachers first); N > 1
starts up to N spawned processes, each training one run at a time, so that several small models fill
a CPU that one batch-64 step cannot keep busy. Every run trains with the study's threads per run
(``perf.threads // perf.workers``), in a worker or in this process, so that where a run trained never
changes its numbers. A run
starts as soon as its teachers are finished (on disk: a worker reads them from there, and their
cached features and logits from ``perf.cache_dir``). Each worker's lines are prefixed with its run.

A failing run stops the study: the other workers are stopped, every finished run stays on disk, and
the failure's one-paragraph error is raised. Ctrl-C stops the workers the same way: workers ignore
SIGINT (the terminal sends it to the whole process group) and are stopped by this process, so Ctrl-C
at any moment is one line. A worker whose parent dies (kill -9) exits at once, so it never writes
into a study that a resumed run now holds. Resume is per run, as always: the next ``run`` trains
what is not finished.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing import util as mp_util
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TextIO

import torch
import torch.multiprocessing as mp

from distillbench.config import PerfConfig, StudyConfig
from distillbench.data import StudyData
from distillbench.errors import UserError, describe_os_error
from distillbench.study.execute import RunExecutor
from distillbench.study.plan import Plan, RunKey, RunSpec
from distillbench.study.scheduling import Grouping, Scheduler, Unit
from distillbench.study.store import RunStore
from distillbench.training.runtime import Runtime, planned_workers


def resolve_workers(perf: PerfConfig, device: torch.device, runs: int) -> int:
    """How many worker processes to start: the study's ``perf.workers`` (``planned_workers``), never
    more than there are runs to do. Fewer processes never means more threads per run: each run's
    thread count is the study's (``Runtime.threads``)."""
    return max(1, min(planned_workers(perf, device), runs))


class SerialExecutor:
    """Trains the units one after another in this process; a seed's models leave memory once all
    its runs are done."""

    def __init__(
        self, train: Callable[[Unit], None], forget_seed: Callable[[int], None], grouping: Grouping | None = None
    ):
        self.train, self.forget_seed, self.grouping = train, forget_seed, grouping

    def execute(self, plan: Plan, begin: Callable[[RunSpec], bool]) -> None:
        schedule = Scheduler(plan, begin, self.grouping)
        forgotten: set[int] = set()
        while (unit := schedule.next_unit()) is not None:
            self.train(unit)
            schedule.completed(unit)
            for seed in {run.seed for run in plan.runs} - forgotten:
                if schedule.seed_complete(seed):
                    self.forget_seed(seed)
                    forgotten.add(seed)
        schedule.check_finished()


class _PrefixedLines(io.TextIOBase):
    """A text stream that writes each complete line to ``target`` behind ``prefix``. Not a tty, so
    progress bars stay off: several workers' bars on one terminal would overwrite each other."""

    def __init__(self, target: TextIO, prefix: str):
        self.target, self.prefix, self.pending = target, prefix, ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            self.target.write(f"{self.prefix}{line.rsplit(chr(13), 1)[-1]}\n")
        self.target.flush()
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False


def _exit_when_orphaned(parent: int) -> None:
    """Exit the moment this worker's parent is gone: a study killed with SIGKILL cannot stop its
    workers, and one still training would write into a directory a resumed study now holds. On Linux
    the kernel kills the worker with its parent (PR_SET_PDEATHSIG); elsewhere a thread watches."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker(
    cfg: StudyConfig,
    out: Path,
    data: StudyData,
    runtime: Runtime,
    channel: Connection,
    pool: Path | None,
    fingerprints: dict[RunKey, str],
    parent: int,
) -> None:
    """A worker process: train each unit it is sent, answering None, or (kind, message) on failure;
    stop when sent None. One process serves many units, so torch is imported once per worker."""
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    stdout, stderr = _PrefixedLines(sys.__stdout__, ""), _PrefixedLines(sys.__stderr__, "")
    sys.stdout, sys.stderr = stdout, stderr
    try:
        try:
            executor = RunExecutor.build(cfg, data, RunStore(out, pool, fingerprints), runtime)
            failed = None
        except UserError as exc:  # e.g. a name registered in the parent only: answered for the first unit
            executor, failed = None, ("error", f"a worker could not start: {exc}")
        except Exception:
            executor, failed = None, ("bug", traceback.format_exc())
        while (unit := channel.recv()) is not None:
            run = unit[0]
            stdout.prefix = stderr.prefix = f"{run.model} seed {run.seed}{' +' if len(unit) > 1 else ''} | "
            outcome = failed
            if executor is not None:
                try:
                    executor.train_group(unit)
                except UserError as exc:
                    outcome = ("error", str(exc))
                except OSError as exc:  # what the operating system refused: words, not a traceback
                    outcome = ("error", describe_os_error(exc))
                except Exception:  # a bug: the parent shows the worker's traceback
                    outcome = ("bug", traceback.format_exc())
                executor.models.forget_all()  # teachers are read back from disk when needed again
            channel.send(outcome)
    except (KeyboardInterrupt, EOFError, BrokenPipeError):  # the parent is gone or stops us: stop quietly
        pass
    finally:
        stdout.flush()


class ProcessExecutor:
    """Trains the runs on ``workers`` spawned processes, each run as soon as its teachers are done."""

    def __init__(
        self,
        cfg: StudyConfig,
        out: Path,
        data: StudyData,
        runtime: Runtime,
        workers: int,
        grouping: Grouping | None = None,
        pool: Path | None = None,
        fingerprints: dict[RunKey, str] | None = None,
    ):
        self.cfg, self.out, self.data, self.runtime = cfg, out, data, runtime
        self.pool, self.fingerprints = pool, dict(fingerprints or {})
        self.workers, self.grouping = workers, grouping
        self.context = mp.get_context("spawn")  # fork would copy torch's thread pools mid-use

    def execute(self, plan: Plan, begin: Callable[[RunSpec], bool]) -> None:
        """Like ``SerialExecutor.execute``, with up to ``workers`` units training at once."""
        schedule = Scheduler(plan, begin, self.grouping)
        busy: dict[Connection, Unit] = {}
        pool: list[tuple[mp.Process, Connection]] = []
        try:
            with _workers_ignore_sigint():  # Ctrl-C reaches only this process, which stops the workers
                pool += [self._start_worker() for _ in range(self.workers)]
            idle = [channel for _, channel in pool]
            while True:
                while idle and (unit := schedule.next_unit()) is not None:
                    channel = idle.pop()
                    busy[channel] = unit
                    try:
                        channel.send(unit)
                    except BrokenPipeError:  # the worker is gone: its outcome reads as EOF below
                        pass
                if not busy:
                    break
                # A worker's channel turns readable with its outcome, or at EOF if the process died.
                for channel in wait(list(busy)):
                    unit = busy.pop(channel)
                    try:
                        outcome = channel.recv()
                    except EOFError:
                        process = next(p for p, c in pool if c is channel)
                        process.join()
                        outcome = ("died", process.exitcode)
                    if outcome is not None:
                        raise _failure(unit, outcome)
                    schedule.completed(unit)
                    idle.append(channel)
            schedule.check_finished()
        finally:  # idle workers are told to stop; after a failure or Ctrl-C, busy ones are stopped
            for _, channel in pool:
                if channel not in busy:
                    with contextlib.suppress(OSError):
                        channel.send(None)
            for process, channel in pool:
                process.join(timeout=10 if channel not in busy else 0)
                if process.is_alive():
                    process.terminate()
                    process.join()
                channel.close()

    def _start_worker(self) -> tuple[mp.Process, Connection]:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker,
            args=(self.cfg, self.out, self.data, self.runtime, child, self.pool, self.fingerprints, os.getpid()),
            name="distillbench worker",
        )
        process.start()
        child.close()  # the worker holds the only other end: its exit makes ours read EOF
        return process, parent


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Worker processes started inside are born ignoring SIGINT: the terminal sends Ctrl-C to the
    whole process group, and a worker interrupted while importing torch printed a traceback; this
    process stops its workers itself. A spawned process inherits an ignored signal (and Python then
    installs no KeyboardInterrupt handler), so SIGINT is ignored here exactly while the spawn forks
    and execs (``multiprocessing.util.spawnv_passfds``, a millisecond), and blocked in this thread
    meanwhile: a Ctrl-C in that instant stays pending here rather than being lost, unless another
    thread takes it. Where this is not POSIX, or not the main thread, nothing changes."""
    spawn = getattr(mp_util, "spawnv_passfds", None)
    if spawn is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def spawn_ignoring_sigint(*args: object, **kwargs: object) -> int:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return spawn(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    mp_util.spawnv_passfds = spawn_ignoring_sigint
    try:
        yield
    finally:
        mp_util.spawnv_passfds = spawn


def _failure(unit: Unit, outcome: tuple[str, object]) -> BaseException:
    kind, detail = outcome
    where = " + ".join(f"{run.model} (seed {run.seed})" for run in unit)
    if kind == "error":
        return UserError(f"{where} failed: {detail} Finished runs are saved; fix this and run again to resume.")
    if kind == "died":
        return UserError(
            f"The worker training {where} died (exit code {detail}; -9 is usually the system killing it for "
            "lack of memory). Finished runs are saved; run again with fewer perf.workers to resume."
        )
    print(detail, file=sys.stderr)
    return RuntimeError(f"{where} failed with a bug in distillbench (its traceback is above)")
