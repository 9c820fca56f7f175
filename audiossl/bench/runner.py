"""Run every (upstream, task) row of the bench, one upstream at a time, skipping rows already saved.

Rows are written to ``out_dir/rows/<upstream>__<task>.json`` the moment they finish, with the settings
that produced them; an interrupted bench run again picks up at the first missing row, and a row whose
settings changed (another profile, another split) is recomputed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from audiossl.bench import accent_id, asr_ctc, frame_phones, keywords, phone_abx, phoneme_ctc, speaker_crops, speaker_id
from audiossl.bench.config import CEILING_NAME, BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow
from audiossl.features.upstream import BASELINES, resolve_checkpoint

Task = Callable[[UpstreamFeatures, BenchConfig, dict[str, BenchRow]], BenchRow]
TASKS: dict[str, Task] = {"phone_frames": frame_phones.run, "abx": phone_abx.run, "speaker": speaker_id.run,
                          "phoneme": phoneme_ctc.run, "asr": asr_ctc.run, "speaker_crops": speaker_crops.run,
                          "accent": accent_id.run, "keywords": keywords.run}


def named_upstreams(cfg: BenchConfig) -> list[tuple[str, str]]:
    """``(report name, source)`` per row group: ``names`` or run directory names, then the ceiling."""
    names = list(cfg.names)
    for source in cfg.upstreams[len(names):]:
        path = Path(source)
        names.append(path.name if path.is_dir() else path.parent.parent.name if path.is_file() else source)
    ceiling = [(CEILING_NAME, cfg.ceiling)] if cfg.ceiling is not None else []
    return list(zip(names, cfg.upstreams)) + ceiling


def row_path(cfg: BenchConfig, upstream: str, task: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", upstream)
    return Path(cfg.out_dir) / "rows" / f"{slug}__{task}.json"


def row_settings(cfg: BenchConfig, source: str, task: str) -> dict[str, Any]:
    """What a saved row depends on: if any of it changed, the row is recomputed."""
    checkpoint = None if source in BASELINES else resolve_checkpoint(source)
    clip = cfg.clip_settings(task)
    return ({"clip": clip} if clip else {}) | {"source": source, "checkpoint": str(checkpoint) if checkpoint else None,
            "checkpoint_mtime": checkpoint.stat().st_mtime if checkpoint else None,
            "random_from": cfg.random_from if source == "random" else None, "task": task,
            "profile": asdict(cfg.settings), "splits": [cfg.train_split, cfg.asr_split, cfg.dev_split],
            "manifest_dir": cfg.manifest_dir}


def saved_row(path: Path, settings: dict[str, Any]) -> BenchRow | None:
    if not path.is_file():
        return None
    row = BenchRow.load(path)
    return row if row.settings == settings else None


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> list[BenchRow]:
    """Every row, in upstream order then task order; returns them (saved ones included)."""
    cfg.validate()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    random_from = cfg.random_from or next((u for u in cfg.upstreams if u not in BASELINES), None)
    rows = []
    for name, source in named_upstreams(cfg):
        features = UpstreamFeatures(name, source, cfg, random_from)
        done: dict[str, BenchRow] = {}
        for task in cfg.tasks:
            settings = row_settings(cfg, source, task)
            path = row_path(cfg, name, task)
            row = saved_row(path, settings)
            if row is None:
                started = time.perf_counter()
                row = TASKS[task](features, cfg, done)
                row.seconds, row.settings = time.perf_counter() - started, settings
                row.save(path)
                log(f"{name:>16} {task:<13} {summary(row, cfg.dev_split)}  ({row.seconds:.0f} s)")
            else:
                log(f"{name:>16} {task:<13} {summary(row, cfg.dev_split)}  (saved)")
            done[task] = row
            rows.append(row)
        features.release()
    return rows


def headline(row: BenchRow, dev_split: str) -> tuple[str, float | None]:
    """The one number a log line (and the report's summary table) shows for a row, with its label."""
    key, label = {"phone_frames": ("dev_accuracy", "phone acc"), "abx": (f"{dev_split}_across", "ABX across"),
                  "speaker": ("test_accuracy", "speaker acc"), "phoneme": ("dev_per", "PER"),
                  "asr": ("dev_lm_wer", "WER (LM)"), "speaker_crops": ("test_accuracy", "speaker acc (crops)"),
                  "accent": ("test_accuracy", "accent acc"), "keywords": ("test_accuracy", "keyword acc")}[row.task]
    return label, row.scores.get(key)


def summary(row: BenchRow, dev_split: str) -> str:
    label, value = headline(row, dev_split)
    return f"{label} {100 * value:.1f} %" if value is not None else label + " n/a"
