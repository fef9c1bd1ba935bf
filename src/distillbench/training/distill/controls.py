"""Controls, so that a gain from distillation can be attributed.

- ``label_smoothing``: KD's loss (same temperature and weights) with the teacher replaced by a
  uniform "virtual teacher", (1 - eps) on the label and eps spread evenly over the other classes,
  eps matched to the teachers' softened predictions' average mass off the label on the training set:
  the teacher-free KD of Yuan et al. (CVPR 2020, "Revisiting Knowledge Distillation via Label
  Smoothing Regularization"). What KD gives beyond it is knowledge of the image, not regularisation.
- ``shuffled_teacher``: KD from the soft labels of *another* training image (a random permutation,
  seeded per run): the authors' notebook did this by accident. A gain that survives it is
  regularisation, not the teacher's knowledge of the image.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PrivateAttr

from distillbench.training.distill.base import AGGREGATIONS, register_method
from distillbench.training.distill.kd import KD


@register_method
class LabelSmoothing(KD):
    method: Literal["label_smoothing"] = "label_smoothing"

    needs_all_teacher_logits: ClassVar[bool] = True
    _smoothing: float | None = PrivateAttr(None)

    @property
    def smoothing(self) -> float:
        if self._smoothing is None:
            raise RuntimeError("label_smoothing: prepare() must see the teachers' training logits first")
        return self._smoothing

    def prepare(self, teachers: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
        target = AGGREGATIONS["mean_probs"](teachers.float(), labels, self.temperature).logits
        on_label = F.softmax(target / self.temperature, dim=-1).gather(1, labels[:, None])
        self._smoothing = float(1.0 - on_label.mean())
        return teachers

    def smoothed_logits(self, labels: torch.Tensor, classes: int) -> torch.Tensor:
        """Logits whose softmax at T is the smoothed labels."""
        probs = torch.full((len(labels), classes), self.smoothing / (classes - 1), device=labels.device)
        probs.scatter_(1, labels[:, None], 1.0 - self.smoothing)
        return self.temperature * probs.clamp_min(1e-30).log()

    def loss(self, student: torch.Tensor, teachers: torch.Tensor, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.batch_loss(student, self.smoothed_logits(labels, student.shape[1]), labels, epoch)


@register_method
class ShuffledTeacher(KD):
    method: Literal["shuffled_teacher"] = "shuffled_teacher"
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Mixed with the run's seed to seed the permutation of the soft labels."
    )

    needs_all_teacher_logits: ClassVar[bool] = True

    def prepare(self, teachers: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
        # A permutation per run, so the interval over seeds includes the permutation's own chance.
        generator = torch.Generator().manual_seed(1_000_003 * self.seed + seed)
        permutation = torch.randperm(teachers.shape[1], generator=generator)
        return teachers[:, permutation.to(teachers.device)]
