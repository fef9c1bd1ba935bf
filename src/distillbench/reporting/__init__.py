"""The reports: a study's figures, ``report.md`` and ``report.html`` from ``results.json``
(``report``), and a sweep's from ``sweep.json`` (``sweep``)."""

from distillbench.reporting.report import write_report

__all__ = ["write_report"]
