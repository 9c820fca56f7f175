"""Per-layer features of a manifest split on disk, written resumably (``audiossl-extract``).

Two layouts under ``<out_dir>/<split>/``:

- ``npy``: one ``.npy`` per utterance at its manifest path (audio suffix replaced), ``(layers, frames, dim)``,
  written to a temporary name and renamed, so a file that exists is complete.
- ``memmap``: ``features.bin``, all utterances' frames one after another as ``(frames, layers, dim)`` rows,
  and ``index.tsv`` (``id<TAB>first frame<TAB>frames``). Rows are appended before their index line, so after
  a kill the index names exactly the finished utterances; the next run cuts the file back to them.
  ``open_features`` maps it with numpy.

``meta.json`` records what was extracted (upstream, layers, dtype, frame geometry); a resumed run with other
settings stops instead of mixing them. Utterances already on disk are skipped; files that cannot be read are
skipped, counted and named in the pipeline's fault report (and tried again by the next run).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.config import ConfigError, check_choice
from audiossl.data.manifest import ManifestRow, write_manifest
from audiossl.data.pipeline import AudioPipeline, DataConfig, ManifestTable, load_manifest
from audiossl.features.frozen import encode_batches
from audiossl.features.upstream import Upstream
from audiossl.progress import progress_bar

FORMATS = ("npy", "memmap")
DTYPES = {"float16": np.float16, "float32": np.float32}
TODO_DIR = ".todo"


@dataclass
class ExtractSummary:
    """What one run wrote; ``skipped`` counts unreadable files (``faults`` is the pipeline's table)."""

    out_dir: Path
    written: int
    already_done: int
    skipped: int
    audio_seconds: float
    wall_seconds: float
    faults: str = ""

    @property
    def real_time_speed(self) -> float:
        """Seconds of audio encoded per wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def select_layers(num_layers: int, layers: list[int] | None) -> list[int]:
    """Hidden-state indices to keep (negative ones count from the end); None keeps all."""
    if layers is None:
        return list(range(num_layers))
    chosen = [index + num_layers if index < 0 else index for index in layers]
    if not chosen or any(not 0 <= index < num_layers for index in chosen):
        raise ConfigError(f"invalid config at 'layers': {layers} do not exist; the upstream has hidden states "
                          f"0..{num_layers - 1}")
    return chosen


class NpyStore:
    """One ``.npy`` per utterance, at its manifest path with the audio suffix replaced."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, utterance: str) -> Path:
        return self.directory / Path(utterance).with_suffix(".npy")

    def done(self, ids: list[str]) -> set[str]:
        return {utterance for utterance in ids if self.path(utterance).is_file()}

    def write(self, utterance: str, array: np.ndarray) -> None:
        path = self.path(utterance)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(temporary, "wb") as handle:
            np.save(handle, array)
        os.replace(temporary, path)

    def close(self) -> None:
        """Nothing stays open between utterances."""


class MemmapStore:
    """``features.bin`` + ``index.tsv`` (see the module docstring)."""

    def __init__(self, directory: Path, row_bytes: int) -> None:
        self.directory, self.row_bytes = directory, row_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self.entries = read_index(directory / "index.tsv")
        self.next_frame = sum(frames for _, _, frames in self.entries)
        data_path = directory / "features.bin"
        data_path.touch()
        os.truncate(data_path, self.next_frame * row_bytes)  # drop rows a killed run wrote but never indexed
        self._data = open(data_path, "ab")
        self._index = open(directory / "index.tsv", "a", encoding="utf-8")

    def done(self, ids: list[str]) -> set[str]:
        return {utterance for utterance, _, _ in self.entries}

    def write(self, utterance: str, array: np.ndarray) -> None:
        rows = np.ascontiguousarray(array.transpose(1, 0, 2))  # (frames, layers, dim)
        self._data.write(rows.tobytes())
        self._data.flush()
        self._index.write(f"{utterance}\t{self.next_frame}\t{rows.shape[0]}\n")
        self._index.flush()
        self.next_frame += rows.shape[0]

    def close(self) -> None:
        self._data.close()
        self._index.close()


def read_index(path: Path) -> list[tuple[str, int, int]]:
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        utterance, first, frames = line.split("\t")
        entries.append((utterance, int(first), int(frames)))
    return entries


def open_features(directory: str | Path) -> tuple[np.memmap, list[tuple[str, int, int]], dict[str, Any]]:
    """The memmap layout as ``(frames, layers, dim)`` array, its index and ``meta.json``; read-only."""
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    index = read_index(directory / "index.tsv")
    frames = sum(count for _, _, count in index)
    shape = (frames, len(meta["layers"]), meta["dim"])
    return np.memmap(directory / "features.bin", dtype=DTYPES[meta["dtype"]], mode="r", shape=shape), index, meta


def _check_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json``, or check that a resumed run extracts exactly what the earlier one did."""
    path = directory / "meta.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before != meta:
            changed = sorted(k for k in meta if before.get(k) != meta[k])
            raise ConfigError(f"invalid config at 'out_dir': {directory} holds features extracted with other "
                              f"settings ({', '.join(changed)}); use another out_dir or remove it")
        return
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=2) + "\n")


def _todo_pipeline(data: DataConfig, split: str, directory: Path, table: ManifestTable,
                   done: set[str]) -> AudioPipeline | None:
    """A pipeline over the utterances not on disk yet (a manifest of them in ``.todo/``), in manifest order."""
    rows = [ManifestRow(utterance, size) for utterance, size in zip(table.ids, table.sizes) if utterance not in done]
    if not rows:
        return None
    write_manifest(directory / TODO_DIR, split, table.root, rows, {})
    todo = replace(data, manifest_dir=str(directory / TODO_DIR)).for_evaluation(labels=[])
    return AudioPipeline(todo, split, train=False)


def extract_to_disk(upstream: Upstream, data: DataConfig, split: str, out_dir: str | Path,
                    layers: list[int] | None = None, fmt: str = "npy", dtype: str = "float16",
                    device: str = "cpu") -> ExtractSummary:
    """Encode every utterance of ``split`` not on disk yet and store the chosen hidden states."""
    check_choice(fmt, FORMATS, "format")
    check_choice(dtype, tuple(DTYPES), "dtype")
    chosen = select_layers(upstream.num_layers, layers)
    directory = Path(out_dir) / split
    _check_meta(directory, {"upstream": upstream.spec.source, "cmvn": upstream.spec.cmvn, "split": split,
                            "format": fmt, "dtype": dtype, "layers": chosen, "dim": upstream.dim,
                            "frame_stride": upstream.frame_stride, "receptive_field": upstream.receptive_field,
                            "sample_rate": data.sample_rate})
    row_bytes = len(chosen) * upstream.dim * np.dtype(DTYPES[dtype]).itemsize
    store = NpyStore(directory) if fmt == "npy" else MemmapStore(directory, row_bytes)
    table = load_manifest(data.manifest_dir, split, [])
    done = store.done(table.ids)
    start = time.perf_counter()
    pipeline = _todo_pipeline(data, split, directory, table, done)
    written: set[str] = set()
    seconds = 0.0
    try:
        if pipeline is not None:
            shown = progress_bar(pipeline, total=len(pipeline), desc=f"extract {split}", unit="batch")
            on_device = (batch.to(device) for batch in shown)
            for batch, utterances in encode_batches(upstream, on_device, per_utterance=not upstream.padding_invariant):
                for utterance, hidden, length in zip(batch.ids, utterances, batch.lengths.tolist()):
                    if utterance in written:  # the pipeline's stand-in for an all-unreadable batch
                        continue
                    kept = torch.stack([hidden[i] for i in chosen]).float().cpu().numpy()
                    store.write(utterance, kept.astype(DTYPES[dtype]))
                    written.add(utterance)
                    seconds += length / batch.sample_rate
    finally:
        store.close()
    shutil.rmtree(directory / TODO_DIR, ignore_errors=True)
    skipped = len(table) - len(done) - len(written)
    faults = pipeline.fault_report().table() if pipeline is not None and skipped else ""
    return ExtractSummary(directory, len(written), len(done), skipped, seconds, time.perf_counter() - start, faults)
