"""Whether a saved run is a result of the study that asks for it.

A run directory holds a finished run once its ``predictions.npz`` exists (written last). It is a
result of *this* study only if its identity matches: its ``run.json`` fingerprint equals the
fingerprint the study's config gives that run, and, for a student, the checkpoints it distilled are
still its teachers' checkpoints (a teacher retrained to other weights makes its students stale even
if no setting changed). ``run`` and ``report`` both judge runs here, so neither can show a stale run
as a result.

``plan.json`` in the study directory records, when a study starts, every run it asks for with its
fingerprint and teachers, and the sha256 of ``config.yaml``: ``report`` judges runs without loading
the data or the weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from distillbench.errors import UserError
from distillbench.study.layout import RunLayout

PLAN_FORMAT = 1


@dataclass(frozen=True)
class PlannedRun:
    model: str
    seed: int
    fingerprint: str
    teachers: tuple[str, ...]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record(layout: RunLayout, key: str, seed: int) -> dict[str, Any] | None:
    paths = layout.run(key, seed)
    if not paths.predictions.exists():
        return None
    try:
        return json.loads(paths.record.read_text())
    except (OSError, ValueError):
        return {}


def run_state(layout: RunLayout, run: PlannedRun) -> tuple[str, str | None]:
    """("finished", None), ("missing", None) or ("stale", why) for a planned run."""
    record = _record(layout, run.model, run.seed)
    if record is None:
        return "missing", None
    if record.get("fingerprint") != run.fingerprint:
        return "stale", "trained with a different configuration"
    distilled = record.get("teacher_checkpoints") or {}
    for teacher in run.teachers:
        current = _record(layout, teacher, run.seed)
        if current is None:
            return "stale", f"its teacher {teacher} (seed {run.seed}) is not on disk"
        if not current.get("checkpoint_sha256") or not distilled.get(teacher):
            return "stale", f"its teacher {teacher} (seed {run.seed}) has no checkpoint hash (an older distillbench)"
        if distilled[teacher] != current["checkpoint_sha256"]:
            return "stale", f"its teacher {teacher} (seed {run.seed}) was retrained after it"
    return "finished", None


def write_plan(layout: RunLayout, config_text: str, runs: list[PlannedRun]) -> None:
    from distillbench.atomic import write_json

    write_json(
        layout.plan,
        {
            "format": PLAN_FORMAT,
            "config_sha256": sha256_hex(config_text.encode("utf-8")),
            "runs": [
                {"model": r.model, "seed": r.seed, "fingerprint": r.fingerprint, "teachers": list(r.teachers)}
                for r in runs
            ],
        },
    )


def read_plan(layout: RunLayout) -> list[PlannedRun]:
    """The runs the study in ``layout`` asked for when it last started; checked against config.yaml."""
    again = f"Run `distillbench run --config {layout.config} --out {layout.root}` to bring it up to date."
    try:
        plan = json.loads(layout.plan.read_text())
        config_text = layout.config.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"{layout.root} has no plan.json: it was written by an older distillbench, or its run stopped "
            f"before training began. {again}"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{layout.plan} is unreadable ({type(exc).__name__}: {exc}). {again}") from None
    if plan.get("format") != PLAN_FORMAT:
        raise UserError(f"{layout.plan} has format {plan.get('format')!r}, not {PLAN_FORMAT}. {again}")
    if plan.get("config_sha256") != sha256_hex(config_text.encode("utf-8")):
        raise UserError(
            f"{layout.config} is not the config that {layout.plan} was made from (it was edited, or a run "
            f"stopped while starting). {again}"
        )
    return [PlannedRun(r["model"], int(r["seed"]), r["fingerprint"], tuple(r["teachers"])) for r in plan["runs"]]
