"""Ways to combine several teachers' logits ``[K, B, C]``. With identical teachers, each gives
what one of them gives alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillbench.training.distill.base import Target, register_aggregation


@register_aggregation("mean_logits")
def mean_logits(teachers: torch.Tensor, labels: torch.Tensor, temperature: float) -> Target:
    """The mean of the teachers' logits (the seed paper)."""
    return Target(logits=teachers.mean(0))


@register_aggregation("mean_probs")
def mean_probs(teachers: torch.Tensor, labels: torch.Tensor, temperature: float) -> Target:
    """The mean of the softened probabilities softmax(z_k / T) (the authors' notebook), returned as
    logits T * log(p) so that softmax(logits / T) is exactly that mean."""
    probs = F.softmax(teachers / temperature, dim=-1).mean(0)
    return Target(logits=temperature * probs.clamp_min(1e-30).log())


@register_aggregation("mean_kl")
def mean_kl(teachers: torch.Tensor, labels: torch.Tensor, temperature: float) -> Target:
    """The mean of the per-teacher losses (You et al., KDD 2017: "Learning from multiple teacher
    networks")."""
    return Target(weights=torch.full(teachers.shape[:2], 1.0 / teachers.shape[0], device=teachers.device))


@register_aggregation("entropy_weighted")
def entropy_weighted(teachers: torch.Tensor, labels: torch.Tensor, temperature: float) -> Target:
    """Per sample, each teacher's loss weighted by softmax over teachers of minus the entropy of its
    softened prediction: a confident teacher counts more."""
    log_probs = F.log_softmax(teachers / temperature, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)  # [K, B]
    return Target(weights=F.softmax(-entropy, dim=0))


@register_aggregation("confidence_weighted")
def confidence_weighted(teachers: torch.Tensor, labels: torch.Tensor, temperature: float) -> Target:
    """CA-MKD's logit weights (Zhang et al., ICASSP 2022): w_k = (1 - softmax_k(CE_k)) / (K - 1),
    CE_k the teacher's cross-entropy on the label; a teacher right about the sample counts more."""
    count = teachers.shape[0]
    if count == 1:
        return Target(weights=torch.ones(teachers.shape[:2], device=teachers.device))
    ce = torch.stack([F.cross_entropy(t, labels, reduction="none") for t in teachers])  # [K, B]
    return Target(weights=(1.0 - F.softmax(ce, dim=0)) / (count - 1))


@register_aggregation("standardized_mean")
def standardized_mean(teachers: torch.Tensor, labels: torch.Tensor, temperature: float) -> Target:
    """Each teacher's logits z-scored per sample before averaging, so that a teacher with larger
    logits does not dominate; the mean is put back on the teachers' average scale and offset."""
    mean = teachers.mean(-1, keepdim=True)
    std = teachers.std(-1, keepdim=True).clamp_min(1e-6)
    standardized = ((teachers - mean) / std).mean(0)
    return Target(logits=standardized * std.mean(0) + mean.mean(0))
