"""What the clip-level sets (``keywords``, ``accents``) share besides the corpus's voices: a build record that
says when a set on disk can be reused, and one fresh process per synthesis job.

Fresh processes for the same reason as the corpus (``build``): espeak is a process-wide singleton whose state
would otherwise carry from one voice to the next, so a job's audio would depend on which jobs ran before it in
the same worker. Each job runs in its own process forked from a ``forkserver`` that preloaded only the module
holding the job functions, which makes a set byte-identical however many workers build it.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def matching_record(path: Path, format_version: int, content: dict[str, Any]) -> dict[str, Any] | None:
    """The record at ``path`` when this format version wrote it for this config (``content``), else None
    (missing, unreadable, from another version or another config: rebuild)."""
    try:
        saved = json.loads(path.read_text())
        same = (saved["format_version"], saved["config"]) == (format_version, json.loads(json.dumps(content)))
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    return saved if same else None


def write_record(path: Path, format_version: int, content: dict[str, Any], **extra: Any) -> None:
    """The record ``matching_record`` reads back, with whatever else the set reports (``counts``, ...)."""
    record = {"format_version": format_version, "config": content, **extra}
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def in_fresh_processes(workers: int, module: str, jobs: Sequence[tuple[Callable[..., Any], tuple]]) -> list[Any]:
    """``[job(*args) for job, args in jobs]``, each call in a new process; ``module`` holds the job functions."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([module])
    with ProcessPoolExecutor(workers, context, max_tasks_per_child=1) as pool:
        futures = [pool.submit(job, *args) for job, args in jobs]
        return [future.result() for future in futures]
