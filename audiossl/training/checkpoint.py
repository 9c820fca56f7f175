"""Crash-safe checkpoints: everything needed to continue a run bit for bit, written so a kill never corrupts one.

Layout under ``run_dir/checkpoints/``: ``step_00001000.pt`` (the last ``keep_last`` of them), ``best.pt``
(model selection) and ``latest`` (a one-line text file naming the newest checkpoint). Each file is written to
a temporary name in the same directory, fsync'ed and ``os.replace``'d into place, so a reader sees either the
old file or the complete new one, whatever moment the writer dies at.

A checkpoint is a dict: ``model`` (the objective's state_dict; the encoder sits under ``encoder.``),
``optimizer``, ``scheduler``, ``trainer`` (step, best metric, counters), ``ranks`` (per-rank RNG and data
pipeline state), ``world_size`` and ``config`` (the resolved run config, with ``encoder`` so downstream
code can rebuild the encoder without the pretraining config files).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch


CHECKPOINT_SUBDIR = "checkpoints"
LATEST_POINTER = "latest"
BEST_NAME = "best.pt"
ENCODER_PREFIX = "encoder."
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_SUBDIR


def step_checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def atomic_torch_save(state: dict[str, Any], path: Path) -> None:
    atomic_write_bytes(path, lambda handle: torch.save(state, handle))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); without it a power cut can bring back the old file."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_checkpoint(run_dir: str | Path, state: dict[str, Any], step: int, keep_last: int) -> Path:
    """Write ``step_<step>.pt``, point ``latest`` at it, then drop all but the newest ``keep_last``."""
    path = step_checkpoint_path(run_dir, step)
    atomic_torch_save(state, path)
    atomic_write_text(checkpoint_dir(run_dir) / LATEST_POINTER, path.name + "\n")
    prune_checkpoints(run_dir, keep_last)
    return path


def save_best(run_dir: str | Path, state: dict[str, Any]) -> Path:
    path = checkpoint_dir(run_dir) / BEST_NAME
    atomic_torch_save(state, path)
    return path


def step_checkpoints(run_dir: str | Path) -> list[Path]:
    """Step checkpoints, oldest first."""
    directory = checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [path for _, path in sorted(found)]


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` step files (``keep_last <= 0`` keeps them all)."""
    if keep_last <= 0:
        return
    for path in step_checkpoints(run_dir)[:-keep_last]:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(run_dir: str | Path) -> None:
    """Temp files left by a writer that was killed mid-save are garbage; the real files are intact."""
    directory = checkpoint_dir(run_dir)
    for path in directory.glob(".*.tmp-*") if directory.is_dir() else []:
        path.unlink(missing_ok=True)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` names, or the newest step file when the pointer is missing."""
    pointer = checkpoint_dir(run_dir) / LATEST_POINTER
    if pointer.is_file():
        named = checkpoint_dir(run_dir) / pointer.read_text().strip()
        if named.is_file():
            return named
    existing = step_checkpoints(run_dir)
    return existing[-1] if existing else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load on CPU; ``weights_only`` so a checkpoint cannot run code when opened."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise RuntimeError(f"cannot read checkpoint {path}: {error}") from error


def capture_rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from; numpy's state as lists so ``weights_only`` loads it."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    numpy_state = dict(state["numpy"], state=dict(state["numpy"]["state"]))
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` insists on tuples; a round trip through some serialisers turns them into lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def encoder_state_dict(model_state: dict[str, torch.Tensor], prefix: str = ENCODER_PREFIX) -> dict[str, torch.Tensor]:
    """The ``encoder.`` entries of an objective's state_dict (or another ``prefix``'s), prefix stripped."""
    return {k[len(prefix) :]: v for k, v in model_state.items() if k.startswith(prefix)}
