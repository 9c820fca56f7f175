"""The mini-SUPERB report: one table of every upstream on every task, per-layer detail, curves and bars.

Rows come from ``audiossl.bench`` already scored; this module only arranges them (``report.md``,
``report.json`` with every row unrounded, and PNG figures).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from audiossl.bench.config import CEILING_NAME, CLIP_TASKS
from audiossl.bench.results import BenchRow
from audiossl.reports import plots
from audiossl.reports.markdown import percent

POOLED_TASKS = ("speaker", *CLIP_TASKS)  # one L-BFGS probe per layer on pooled items
# (task, score key, column title, lower is better); ``{dev}`` is the dev split's name.
COLUMNS: list[tuple[str, str, str, bool]] = [
    ("phone_frames", "dev_accuracy", "phone acc % (best layer)", False),
    ("phone_frames", "weighted_dev_accuracy", "phone acc % (weighted)", False),
    ("abx", "{dev}_within", "ABX within % ↓", True),
    ("abx", "{dev}_across", "ABX across % ↓", True),
    ("speaker", "test_accuracy", "speaker acc %", False),
    ("speaker_crops", "test_accuracy", "speaker acc % (crops)", False),
    ("accent", "test_accuracy", "accent acc % (unseen voices)", False),
    ("keywords", "test_accuracy", "KS acc %", False),
    ("keywords", "test_other_accuracy", "KS acc % (-other)", False),
    ("phoneme", "dev_per", "PER % ↓", True),
    ("asr", "dev_greedy_cer", "10-min CER % ↓", True),
    ("asr", "dev_greedy_wer", "10-min WER % ↓", True),
    ("asr", "dev_lm_wer", "10-min WER+LM % ↓", True),
]


def _cell(row: BenchRow | None, key: str) -> tuple[str, float | None]:
    if row is None or row.scores.get(key) is None:
        return "–", None
    value = row.scores[key]
    spread = row.scores.get(f"{key}_std")
    text = percent(value) if not spread else f"{percent(value)} ± {percent(spread)}"
    return text, value


def summary_table(rows: Sequence[BenchRow], dev_split: str) -> tuple[list[str], list[list[str]], dict[str, dict]]:
    """Header, one line per upstream (best value per column in bold), and the raw values for plots."""
    upstreams = list(dict.fromkeys(row.upstream for row in rows))
    by_key = {(row.upstream, row.task): row for row in rows}
    columns = [(task, key.format(dev=dev_split), title, lower) for task, key, title, lower in COLUMNS
               if any(row.task == task for row in rows)]
    values: dict[str, dict[str, float]] = {title: {} for _, _, title, _ in columns}
    cells: dict[str, list[str]] = {upstream: [] for upstream in upstreams}
    for task, key, title, lower in columns:
        column = {u: _cell(by_key.get((u, task)), key) for u in upstreams}
        known = {u: v for u, (_, v) in column.items() if v is not None and math.isfinite(v)}
        best = (min if lower else max)(known.values()) if known else None
        for upstream, (text, value) in column.items():
            cells[upstream].append(f"**{text}**" if value is not None and value == best else text)
        values[title] = known
    header = ["upstream"] + [title for _, _, title, _ in columns]
    return header, [[upstream] + cells[upstream] for upstream in upstreams], values


def probe_section(bench_dir: str | Path, title: str = "Frozen-feature probes (audiossl-bench)") -> list[str]:
    """The bench's summary table as Markdown lines, for another report (the demo's WER report)."""
    saved = json.loads((Path(bench_dir) / "report.json").read_text(encoding="utf-8"))
    rows = [BenchRow(**row) for row in saved["rows"]]
    header, lines, _ = summary_table(rows, saved["dev_split"])
    return [f"## {title}", "", f"Dev split `{saved['dev_split']}`, rates in %; details in `{bench_dir}/report.md`.",
            "", *_markdown_table(header, lines)]


def _markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return out + ["| " + " | ".join(line) + " |" for line in lines] + [""]


def _per_layer(rows: Sequence[BenchRow]) -> list[str]:
    out = ["## Per layer", "",
           "Layer 0 is the projected conv features; then one entry per context layer. Front-ends have one layer.", ""]
    for task, keys in (("phone_frames", ("dev_accuracy",)), *((name, ("test_accuracy",)) for name in POOLED_TASKS)):
        chosen = [row for row in rows if row.task == task and row.per_layer]
        if not chosen:
            continue
        width = max(len(row.per_layer[keys[0]]) for row in chosen)
        header = [f"{task} ({keys[0]})"] + [f"layer {i}" for i in range(width)]
        lines = [[row.upstream] + [percent(v) for v in row.per_layer[keys[0]]] + [""] * (width - len(row.per_layer[keys[0]]))
                 for row in chosen]
        out += _markdown_table(header, lines)
    weights = [(row.upstream, row.details["layer_weights"]) for row in rows
               if row.task == "phone_frames" and row.details.get("layer_weights")]
    if weights:
        out += ["Learned layer weights of the weighted phone probe: "
                + "; ".join(f"{name}: " + " ".join(f"{w:.2f}" for w in ws) for name, ws in weights) + ".", ""]
    return out


def _ceiling_gap(values: dict[str, dict[str, float]]) -> list[str]:
    """How many points each upstream is short of the supervised ceiling, per column it has (negative: better)."""
    lower = {title: low for _, _, title, low in COLUMNS}
    columns = [title for title, by in values.items() if CEILING_NAME in by]
    upstreams = [u for u in dict.fromkeys(u for title in columns for u in values[title]) if u != CEILING_NAME]
    if not columns or not upstreams:
        return []
    lines = [[upstream] + [_gap(values[title], upstream, lower[title]) for title in columns] for upstream in upstreams]
    header = ["upstream"] + [f"{title} (ceiling {percent(values[title][CEILING_NAME])})" for title in columns]
    return ["## Distance to the supervised ceiling", "",
            f"Points short of the `{CEILING_NAME}` row (the same encoder trained end to end on frame phones), "
            "per column; negative: better than the ceiling.", "", *_markdown_table(header, lines)]


def _gap(column: dict[str, float], upstream: str, lower: bool) -> str:
    if upstream not in column:
        return "–"
    gap = column[upstream] - column[CEILING_NAME] if lower else column[CEILING_NAME] - column[upstream]
    return f"{100 * gap:+.1f}"


def _clip_tasks(rows: Sequence[BenchRow]) -> list[str]:
    """What a clip-task number needs beside it: items per seed, and the accent task's chance level."""
    out = []
    for row in rows:
        if row.task not in CLIP_TASKS:
            continue
        items = ", ".join(f"{part} {count}" for part, count in row.details.get("items", {}).items())
        line = f"- {row.upstream} / {row.task}: seeds {row.details.get('seeds')}, items per seed: {items}"
        if row.task == "accent":
            line += (f"; chance (majority accent) {percent(row.scores.get('chance_accuracy'))} %, "
                     f"{len(row.details.get('accents', []))} accents, voices per split {row.details.get('voices')}")
        out.append(line + ".")
    return (["## Clip tasks", "", *out, ""]) if out else []


def _convergence(rows: Sequence[BenchRow]) -> list[str]:
    out = ["## Did the probes converge?", ""]
    for row in rows:
        if row.task in ("phone_frames", *POOLED_TASKS):
            last = [curve["iterations"][-1] for curve in row.curves.values() if curve.get("iterations")]
            changes = [abs(c["dev_accuracy"][-1] - c["dev_accuracy"][-2]) for c in row.curves.values()
                       if len(c.get("dev_accuracy", [])) > 1]
            if last:
                out.append(f"- {row.upstream} / {row.task}: L-BFGS stopped after {min(last)}-{max(last)} iterations; "
                           f"dev accuracy moved by at most {100 * max(changes, default=0):.2f} points in the last round.")
        elif row.task in ("phoneme", "asr"):
            epochs = [(curve["epochs"][-1], info["best_epoch"]) for (_, curve), info in
                      zip(row.curves.items(), [v for k, v in row.details.items() if k.startswith("seed ")])]
            if epochs:
                out.append(f"- {row.upstream} / {row.task}: stopped at epoch " + ", ".join(
                    f"{stop} (best dev at {best})" for stop, best in epochs) + " (early stopping on dev).")
    return out + [""]


def write_bench_report(out_dir: str | Path, rows: Sequence[BenchRow], title: str, dev_split: str,
                       notes: Sequence[str] = ()) -> Path:
    """Write ``report.md``, ``report.json`` and the PNGs into ``out_dir``; return the Markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header, lines, values = summary_table(rows, dev_split)
    figures = {"bars": plots.plot_bench_bars(values, out_dir / "bench_bars.png"),
               "curves": plots.plot_probe_curves(_curves(rows), out_dir / "probe_curves.png")}
    (out_dir / "report.json").write_text(json.dumps({"title": title, "dev_split": dev_split,
                                                     "rows": [asdict(row) for row in rows]}, indent=1,
                                                    default=_json_default), encoding="utf-8")
    text = [f"# {title}", "", f"Frozen upstreams, dev split `{dev_split}`; rates in %, best per column in bold; "
            "`± x` is the spread (standard deviation) over seeds.", ""]
    text += _markdown_table(header, lines)
    text += [f"![headline metrics]({figures['bars'].name})", ""] if figures["bars"] else []
    text += _ceiling_gap(values) + _per_layer(rows) + _clip_tasks(rows) + _convergence(rows)
    text += [f"![probe curves]({figures['curves'].name})", ""] if figures["curves"] else []
    text += (["## Notes", ""] + [f"- {note}" for note in notes] + [""]) if notes else []
    markdown = out_dir / "report.md"
    markdown.write_text("\n".join(text).rstrip() + "\n", encoding="utf-8")
    return markdown


def _curves(rows: Sequence[BenchRow]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """Panel title -> upstream -> (x, y): the frame probe's best layer, and the CTC probes' first seed."""
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for row in rows:
        if row.task == "phone_frames":
            curve = row.curves.get(f"layer {row.details['best_layer']}")
            if curve:
                panels.setdefault("frame phone probe: dev accuracy vs L-BFGS iterations", {})[row.upstream] = (
                    curve["iterations"], curve["dev_accuracy"])
        elif row.task in ("phoneme", "asr") and row.curves:
            curve = next(iter(row.curves.values()))
            title = "phoneme CTC: dev PER vs epoch" if row.task == "phoneme" else "10-min ASR: dev CER vs epoch"
            panels.setdefault(title, {})[row.upstream] = (curve["epochs"], curve["dev_error"])
    return panels


def _json_default(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)
