"""Where a study writes what: the output layout is a contract other tools read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distillbench.reporting.figures import FIGURES_DIR
from distillbench.reporting.report import REPORT_HTML, REPORT_MD
from distillbench.reporting.sweep import SWEEP_HTML, SWEEP_MD


@dataclass(frozen=True)
class ModelRunPaths:
    root: Path

    @property
    def predictions(self) -> Path:  # written last: its presence means the model is finished
        return self.root / "predictions.npz"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def distill_parts(self) -> Path:  # a feature method's learned parts (regressors, memory): not the model
        return self.root / "distill_parts.pt"

    @property
    def record(self) -> Path:
        return self.root / "run.json"

    @property
    def files(self) -> tuple[Path, ...]:
        """A finished run's files, in the order they are written: predictions last (``distill_parts``
        only where the run's method has learned parts)."""
        return (self.model, self.distill_parts, self.history, self.record, self.predictions)


@dataclass(frozen=True)
class RunLayout:
    root: Path

    config = property(lambda self: self.root / "config.yaml")
    plan = property(lambda self: self.root / "plan.json")
    environment = property(lambda self: self.root / "environment.json")
    results = property(lambda self: self.root / "results.json")
    report = property(lambda self: self.root / REPORT_MD)
    html_report = property(lambda self: self.root / REPORT_HTML)
    figures = property(lambda self: self.root / FIGURES_DIR)

    def run(self, key: str, seed: int) -> ModelRunPaths:
        """One training run: model ``key`` with seed ``seed``."""
        return ModelRunPaths(self.root / "runs" / key / f"seed-{seed}")


@dataclass(frozen=True)
class SweepLayout:
    """A sweep's directory: its config, one study directory per point, the pool of runs they share."""

    root: Path

    config = property(lambda self: self.root / "sweep.yaml")
    results = property(lambda self: self.root / "sweep.json")
    pool = property(lambda self: self.root / "runs")
    report = property(lambda self: self.root / SWEEP_MD)
    html_report = property(lambda self: self.root / SWEEP_HTML)
    figures = property(lambda self: self.root / FIGURES_DIR)

    def point(self, name: str) -> Path:
        """The study directory of the grid point ``name``."""
        return self.root / "points" / name
