"""Markdown + JSON + PNG reports of downstream results (every number from ``downstream.metrics``)."""

from audiossl.reports.report import collect, write_report
from audiossl.reports.results import (
    TASKS,
    SystemResult,
    UtteranceResult,
    load_results,
    save_results,
    score,
)

__all__ = [
    "TASKS",
    "SystemResult",
    "UtteranceResult",
    "collect",
    "load_results",
    "save_results",
    "score",
    "write_report",
]
