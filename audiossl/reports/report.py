"""``write_report``: score every result once, then write report.json, the PNGs and report.md from it.

The Markdown and the JSON are rendered from the same collected dictionary, so a number in the
Markdown can always be found, unrounded, in the JSON.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from audiossl.downstream.base import CTC_TASKS
from audiossl.metrics import NORMALIZATION
from audiossl.reports import plots
from audiossl.reports.markdown import render_markdown
from audiossl.reports.results import (
    TASKS,
    SystemResult,
    by_length,
    by_speaker,
    headline,
    length_bins,
    score,
    worst,
)


def write_report(
    out_dir: str | Path,
    systems: Sequence[SystemResult],
    title: str,
    learning_curves: Mapping[str, str | Path] | None = None,
    notes: Sequence[str] | None = None,
    worst_count: int = 5,
    probes: Sequence[str] = (),
) -> Path:
    """Write ``report.md``, ``report.json`` and PNG plots into ``out_dir``; return the Markdown path.

    ``systems`` are the cells to compare (system x split x decoder, any tasks); ``learning_curves`` maps
    a run name to its ``metrics.jsonl`` (or run directory); ``notes`` are printed at the end verbatim;
    ``probes`` are Markdown lines (the frozen-feature probe table of ``reports.bench``) shown right
    after the headline table.
    """
    if not systems:
        raise ValueError("write_report needs at least one SystemResult")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = collect(systems, title, worst_count)
    report["notes"] = list(notes or [])
    report["probes"] = list(probes)
    report["plots"] = _draw(out_dir, systems, report, learning_curves or {})
    (out_dir / "report.json").write_text(json.dumps(_json_safe(report), indent=1, ensure_ascii=False), encoding="utf-8")
    markdown = out_dir / "report.md"
    markdown.write_text(render_markdown(report), encoding="utf-8")
    return markdown


def collect(systems: Sequence[SystemResult], title: str, worst_count: int = 5) -> dict[str, Any]:
    """Every number of the report, computed through ``results`` / ``metrics``."""
    bins = {task: length_bins([s for s in systems if s.task == task]) for task in CTC_TASKS}
    entries = []
    for result in systems:
        scores = score(result)
        entries.append(
            {
                "system": result.system,
                "split": result.split,
                "decoder": result.decoder,
                "task": result.task,
                "label": result.label,
                "headline_metric": result.scoring.headline,
                "headline": headline(result, scores),
                "metrics": scores,
                "by_speaker": by_speaker(result),
                "by_length": by_length(result, bins[result.task]) if result.task in bins else {},
                "worst": [asdict(u) for u in worst(result, worst_count)],
            }
        )
    return {
        "title": title,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "normalization": NORMALIZATION,
        "results": entries,
        "over_seeds": over_seeds(entries),
    }


SEEDED = re.compile(r"^(?P<system>.+?) seed (?P<seed>\d+)$")
"""Systems named ``<system> seed <n>`` are runs of one recipe with different seeds."""


def over_seeds(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, sample standard deviation and range of each headline (and CER for ASR) over the seeds of a system.

    One row per (system, split, decoder) that has at least two seeded runs, in first-seen order: the spread a
    reader needs before believing that one recipe beats another.
    """
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for entry in entries:
        found = SEEDED.match(entry["system"])
        if found:
            groups.setdefault((found["system"], entry["split"], entry["decoder"], entry["task"]), []).append(entry)
    rows = []
    for (system, split, decoder, task), runs in groups.items():
        if len(runs) < 2:
            continue
        row = {"system": system, "split": split, "decoder": decoder, "task": task, "seeds": len(runs),
               "headline": _spread([r["headline"] for r in runs])}
        if task == "asr":
            row["cer"] = _spread([r["metrics"]["cer"] for r in runs])
        rows.append(row)
    return rows


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values), "min": min(values), "max": max(values)}


def _draw(
    out_dir: Path, systems: Sequence[SystemResult], report: dict[str, Any], runs: Mapping[str, str | Path]
) -> dict[str, Any]:
    """Draw every figure; returns file names relative to ``out_dir`` (None where nothing was drawn)."""
    entries = report["results"]
    drawn: dict[str, Any] = {"learning_curves": None, "per_speaker": {}, "error_by_length": {}, "confusion": {}}
    if runs:
        drawn["learning_curves"] = _name(plots.plot_learning_curves(runs, out_dir / "learning_curves.png"))
    for task in dict.fromkeys(e["task"] for e in entries):
        of_task = [e for e in entries if e["task"] == task]
        metric = TASKS[task].name
        per_speaker = {e["label"]: _speaker_bars(e) for e in of_task}
        figure = plots.plot_per_speaker(per_speaker, metric, out_dir / f"per_speaker_{task}.png")
        drawn["per_speaker"][task] = _name(figure)
        if task in CTC_TASKS:
            curves = {e["label"]: {b: m[e["headline_metric"]] for b, m in e["by_length"].items()} for e in of_task}
            drawn["error_by_length"][task] = _name(
                plots.plot_error_by_length(curves, metric, out_dir / f"error_by_length_{task}.png")
            )
    for result in systems:
        if result.task == "speaker":
            path = out_dir / f"confusion_{_slug(result.label)}.png"
            figure = plots.plot_confusion(result.column("reference"), result.column("hypothesis"), path, result.label)
            drawn["confusion"][result.label] = _name(figure)
    return drawn


def _speaker_bars(entry: dict[str, Any]) -> dict[str, tuple[float, float]]:
    key = entry["headline_metric"]
    return {speaker: (m[key], m["stderr"]) for speaker, m in entry["by_speaker"].items()}


def _name(path: Path | None) -> str | None:
    return None if path is None else path.name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "result"


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
