"""distillbench: a one-command comparative study of small CNNs, fine-tuned ImageNet models and
knowledge-distilled students.

The Python API (``run_study``, ``load_results``, ``load_config``) is ``distillbench.api``, imported
on first use so that ``import distillbench`` (and the command line's --help) stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports it on first use
    from distillbench.api import load_config, load_results, run_study

__version__ = "0.1.0"
__all__ = ["load_config", "load_results", "run_study"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from distillbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'distillbench' has no attribute {name!r}")
