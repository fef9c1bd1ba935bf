"""What every distillation method shares: typed parameters, the teachers' aggregation, the loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from distillbench.config import KDConfig, Temperature
from distillbench.models.classifier import Features
from distillbench.registry import Registry


@dataclass(frozen=True)
class Target:
    """What an aggregation makes of several teachers' logits ``[K, B, C]``: one target (``logits``,
    ``[B, C]``), or per-teacher, per-sample weights (``weights``, ``[K, B]``, summing to 1 over the
    teachers) for a weighted mean of the per-teacher losses."""

    logits: torch.Tensor | None = None
    weights: torch.Tensor | None = None


Aggregation = Callable[[torch.Tensor, torch.Tensor, float], Target]  # (teachers, labels, temperature)
AGGREGATIONS: Registry[Aggregation] = Registry("aggregation")
METHODS: Registry[type[DistillMethod]] = Registry("distillation method")


def register_aggregation(name: str) -> Callable[[Aggregation], Aggregation]:
    """``@register_aggregation(name)`` makes a function the aggregation ``aggregation: name``."""
    return AGGREGATIONS.register(name)


def register_method(cls: type[DistillMethod]) -> type[DistillMethod]:
    """Register a method under the value of its ``method`` field's default."""
    return METHODS.register(cls.model_fields["method"].default, cls)


class DistillMethod(BaseModel):
    """A distillation loss with its parameters. Subclasses define ``method`` (its registered name,
    as the field's default), their parameters, and ``sample_loss`` (per sample) or, for a loss over
    the batch, ``batch_loss`` with ``per_sample = False``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    method: str
    temperature: Temperature = 4.0
    aggregation: str = Field("mean_logits", description="How several teachers combine (AGGREGATIONS).")

    per_sample: ClassVar[bool] = True  # False: the loss is defined over a batch (no per-sample weights)
    # True: a feature method. Its loss is ``feature_loss`` on the student's and its teachers' ``Features``
    # (stage outputs, embedding, logits), computed on every batch, instead of ``loss`` on logits.
    needs_features: ClassVar[bool] = False
    # Which of the teacher's ``Features`` a feature method's loss reads, what a cache keeps: "stages",
    # "preactivation" (``Features.preactivation``), "embedding", "logits".
    teacher_features: ClassVar[frozenset[str]] = frozenset({"stages", "preactivation", "embedding", "logits"})
    defaults_from_kd_section: ClassVar[bool] = False  # True: unset parameters come from the kd: section
    needs_all_teacher_logits: ClassVar[bool] = False  # True: ``prepare`` needs the whole training set's

    def prepare(self, teachers: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Called once per run (``seed``) with every training image's teacher logits ``[K, N, C]``
        (cached path); returns the logits to distil (controls change them). Default: unchanged."""
        return teachers

    def sample_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        """Per-sample loss ``[B]`` against one teacher's (or an aggregated) logits."""
        raise NotImplementedError

    def batch_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        return self.sample_loss(student, teacher, labels, epoch).mean()

    def loss(self, student: torch.Tensor, teachers: torch.Tensor, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        """The training loss of ``student`` logits ``[B, C]`` given the teachers' ``[K, B, C]``;
        ``epoch`` counts from 1 (warm-ups)."""
        target = AGGREGATIONS[self.aggregation](teachers.float(), labels, self.temperature)
        if target.logits is not None:
            return self.batch_loss(student, target.logits, labels, epoch)
        if self.per_sample:
            losses = torch.stack([self.sample_loss(student, t, labels, epoch) for t in teachers.float()])
            return (target.weights * losses).sum(0).mean()
        # A batch loss takes only equal weights (mean_kl): the mean of the per-teacher losses.
        return torch.stack([self.batch_loss(student, t, labels, epoch) for t in teachers.float()]).mean()

    def learned_parts(
        self, student: Features, teacher: Features, train_labels: torch.Tensor, seed: int
    ) -> nn.Module | None:
        """A feature method's own trainable modules (a regressor, embeddings, a memory bank), built
        once per run from one batch's ``Features`` of the student and of its teacher (their shapes)
        and the training split's labels (one row per training image: CRD's memory); ``seed`` is the
        run's, for anything they draw at random. The loop trains their parameters with the
        student's, in the student's optimiser; the run saves them beside the student
        (``distill_parts.pt``); they are not part of the deployed student. None (default): none."""
        return None

    def feature_loss(
        self,
        student: Features,
        teachers: list[Features],
        labels: torch.Tensor,
        epoch: int,
        *,
        parts: nn.Module | None = None,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A feature method's whole training loss (its cross-entropy and logit terms included, with the
        weights of its reference runs), a scalar, from the student's ``Features`` (with gradients) and
        each teacher's (without); ``epoch`` counts from 1; ``parts``: what ``learned_parts`` built
        (in train mode, on the batch's device); ``index``: the batch's positions in the training split."""
        raise NotImplementedError


def _problem(error: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]


def resolve_method(distill: str | dict[str, Any], kd: KDConfig, where: str) -> DistillMethod:
    """The method a student's ``distill`` setting names: a name (``kd`` takes the global ``kd:``
    section) or a mapping ``{method: NAME, PARAM: VALUE, ...}``. Raises ``ValueError`` with one
    ``where.PARAM: problem`` line per problem."""
    settings = {"method": distill} if isinstance(distill, str) else dict(distill)
    name = settings.get("method")
    cls = METHODS.resolve(name, where)
    if cls.defaults_from_kd_section:  # kd and the controls built on it: the kd: section is the default
        settings = {**kd.model_dump(), **settings}
    try:
        method = cls(**settings)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{where}.{line}" for line in _problem(exc))) from None
    AGGREGATIONS.resolve(method.aggregation, f"{where}.aggregation")
    if not method.per_sample and method.aggregation in {"entropy_weighted", "confidence_weighted"}:
        raise ValueError(
            f"{where}.aggregation: {name} is a loss over the batch, so it cannot weight teachers per sample; "
            "use mean_logits, mean_probs, standardized_mean or mean_kl"
        )
    return method
