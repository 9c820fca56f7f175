"""PNG figures for reports (matplotlib, Agg backend so they render on headless machines).

Each function takes numbers already computed by ``results``/``metrics`` (never recomputes them), writes
one PNG and returns its path, or None when there is nothing to draw.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

NOT_CURVES = {"step", "epoch", "time", "elapsed", "wall_time", "wall_seconds", "run_wall_seconds", "seconds", "timestamp"}
MAX_PANELS = 6


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def read_metrics_jsonl(path: str | Path) -> list[dict[str, float]]:
    """Numeric fields of each JSON line of a run's ``metrics.jsonl`` (a run directory is accepted).

    Tolerant by design: lines that are not JSON objects are skipped, non-numeric values dropped, and a
    record without ``step`` gets the previous record's step (evaluation lines often omit it). Validation
    records' metrics come out as ``dev_<name>`` so dev curves sit beside the training loss.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    records: list[dict[str, float]] = []
    step = 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        numeric = {k: float(v) for k, v in record.items() if _is_number(v)}
        if record.get("split") == "valid":  # validation metrics are nested: dev WER, CER, accuracy, ...
            numeric |= {f"dev_{k}": float(v) for k, v in (record.get("metrics") or {}).items() if _is_number(v)}
        step = numeric.setdefault("step", step)
        records.append(numeric)
    return records


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _legend_outside(axis: plt.Axes) -> None:
    """Legends beside the axes: with many systems an inside legend hides the lines it explains."""
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _curve_keys(runs: Mapping[str, list[dict[str, float]]]) -> list[str]:
    """Which metrics get a panel: loss first, then error rates and accuracies, then the rest."""
    keys = {key for records in runs.values() for record in records for key in record} - NOT_CURVES

    def priority(key: str) -> tuple[int, str]:
        if key == "loss":
            return 0, key
        for rank, tag in enumerate(("wer", "per", "acc", "cer")):
            if tag in key:
                return 1 + rank, key
        return (5 if "loss" in key else 6), key

    return sorted(keys, key=priority)[:MAX_PANELS]


def plot_learning_curves(runs: Mapping[str, str | Path], out_path: str | Path) -> Path | None:
    """One panel per metric (loss, dev WER, ...) against step, one line per run."""
    loaded = {name: read_metrics_jsonl(path) for name, path in runs.items()}
    keys = _curve_keys(loaded)
    if not keys:
        return None
    columns = min(len(keys), 3)
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        for name, records in loaded.items():
            points = [(r["step"], r[key]) for r in records if key in r]
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, label=name, marker="." if len(points) < 30 else None)
        axis.set_title(key)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        _log_scale_if_wide(axis)
    for axis in list(axes.flat)[len(keys) :]:
        axis.axis("off")
    _legend_outside(axes.flat[columns - 1])
    return _save(figure, Path(out_path))


def _log_scale_if_wide(axis: plt.Axes) -> None:
    """Losses often fall by orders of magnitude; a log axis keeps the late, slow part readable."""
    values = [v for line in axis.get_lines() for v in line.get_ydata()]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        axis.set_yscale("log")


def plot_error_by_length(
    curves: Mapping[str, Mapping[str, float]], metric_name: str, out_path: str | Path
) -> Path | None:
    """Error rate (%) per length bin, one line per system label; bins are shared, sorted by name."""
    if not curves:
        return None
    bins = sorted({name for values in curves.values() for name in values})
    figure, axis = plt.subplots(figsize=(7.5, 4))
    positions = np.arange(len(bins))
    for label, values in curves.items():
        axis.plot(positions, [100 * values.get(b, math.nan) for b in bins], marker="o", label=label)
    axis.set_xticks(positions, [b.split(": ", 1)[-1] for b in bins], rotation=20)
    axis.set_xlabel("utterance length bin")
    axis.set_ylabel(f"{metric_name} (%)")
    axis.set_title(f"{metric_name} by utterance length")
    axis.grid(alpha=0.3)
    _legend_outside(axis)
    return _save(figure, Path(out_path))


def plot_per_speaker(
    values: Mapping[str, Mapping[str, tuple[float, float]]], metric_name: str, out_path: str | Path
) -> Path | None:
    """Grouped bars: ``values[label][speaker] = (rate, stderr)``, whiskers = one standard error."""
    if not values:
        return None
    speakers = sorted({s for per in values.values() for s in per})
    width = 0.8 / len(values)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.5 * len(speakers) * max(1, len(values) / 2)), 4))
    positions = np.arange(len(speakers))
    for offset, (label, per) in enumerate(values.items()):
        rates = [100 * per.get(s, (math.nan, 0.0))[0] for s in speakers]
        errors = [100 * np.nan_to_num(per.get(s, (math.nan, 0.0))[1]) for s in speakers]
        axis.bar(positions + offset * width, rates, width, yerr=errors, capsize=2, label=label)
    axis.set_xticks(positions + 0.4 - width / 2, speakers, rotation=45 if len(speakers) > 8 else 0)
    axis.set_xlabel("speaker")
    axis.set_ylabel(f"{metric_name} (%)")
    axis.set_title(f"{metric_name} per speaker (whiskers: ±1 standard error)")
    axis.grid(axis="y", alpha=0.3)
    _legend_outside(axis)
    return _save(figure, Path(out_path))


def plot_confusion(
    labels: Sequence[str], predictions: Sequence[str], out_path: str | Path, title: str
) -> Path | None:
    """Row-normalised speaker confusion matrix (true speaker per row), with counts when it is small."""
    if not labels:
        return None
    classes = sorted(set(labels) | set(predictions))
    index = {name: i for i, name in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)))
    for truth, guess in zip(labels, predictions):
        counts[index[truth], index[guess]] += 1
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(12.0, 3.0 + 0.35 * len(classes))
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true speaker's utterances")
    if len(classes) <= 40:
        axis.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        axis.set_yticks(range(len(classes)), classes, fontsize=7)
    if len(classes) <= 15:
        for (row, col), count in np.ndenumerate(counts):
            if count:
                color = "white" if share[row, col] > 0.5 else "black"
                axis.text(col, row, int(count), ha="center", va="center", fontsize=7, color=color)
    axis.set_xlabel("predicted speaker")
    axis.set_ylabel("true speaker")
    axis.set_title(title, fontsize=9)
    return _save(figure, Path(out_path))


def plot_bench_bars(values: Mapping[str, Mapping[str, float]], out_path: str | Path) -> Path | None:
    """One panel per bench column, one bar per upstream (values are fractions, drawn as %)."""
    panels = [(title, column) for title, column in values.items() if column]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for axis, (title, column) in zip(axes.flat, panels):
        names = list(column)
        axis.bar(range(len(names)), [100 * column[n] for n in names], color=plt.cm.tab10(np.arange(len(names)) % 10))
        axis.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        axis.set_title(title, fontsize=9)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    return _save(figure, Path(out_path))


def plot_probe_curves(panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
                      out_path: str | Path) -> Path | None:
    """Probe training curves, one panel per probe kind and one line per upstream (y in %)."""
    panels = {title: lines for title, lines in panels.items() if lines}
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for axis, (title, lines) in zip(axes.flat, panels.items()):
        for name, (x, y) in lines.items():
            axis.plot(list(x), [100 * v for v in y], marker=".", label=name)
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3)
        _legend_outside(axis)
    return _save(figure, Path(out_path))
