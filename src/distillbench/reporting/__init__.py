"""The report: figures and ``report.md`` from ``results.json``."""

from distillbench.reporting.markdown import write_report

__all__ = ["write_report"]
