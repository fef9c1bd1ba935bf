"""Distillation methods, found by name (``zoo.<student>.distill``), and the ways to combine several
teachers (``aggregation``).

A method is one file holding one ``DistillMethod`` subclass (its typed parameters and its loss) and
one ``@register_method`` line; an aggregation is one function and one ``@register_aggregation``
line. The study resolves a student's ``distill`` setting to a method instance with
``resolve_method`` (called by ``study.recipe`` only), which raises the one-paragraph error naming a bad method,
aggregation or parameter.
"""

from distillbench.training.distill import (  # noqa: F401  (registrations)
    aggregate,
    at,
    controls,
    crd,
    dist,
    dkd,
    fitnet,
    kd,
    lskd,
    reviewkd,
    rkd,
)
from distillbench.training.distill.base import (
    AGGREGATIONS,
    METHODS,
    DistillMethod,
    Target,
    register_aggregation,
    register_method,
    resolve_method,
)
from distillbench.training.distill.kd import KD, kd_loss

__all__ = [
    "AGGREGATIONS",
    "KD",
    "METHODS",
    "DistillMethod",
    "Target",
    "kd_loss",
    "register_aggregation",
    "register_method",
    "resolve_method",
]
