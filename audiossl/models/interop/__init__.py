"""Checkpoints of the peer toolkits in and out: HuggingFace, fairseq, torchaudio, fairseq2.

``open_checkpoint`` tells what a path holds (reading a file once, safely); ``load_peer`` turns a peer
checkpoint into our ``Encoder`` with its weights plus any CTC or pretraining head. One file per peer holds
its parameter names and config translation; ``common`` holds what they share. Export (HF and torchaudio)
lives in ``hf.export_hf`` and ``torchaudio.export_torchaudio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiossl.models.interop.common import CTCHead, InteropError, PeerModel, PretrainingHead, read_torch_file

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class OpenedCheckpoint:
    """``kind``: ``audiossl``, ``hf``, ``fairseq``, ``torchaudio`` or ``fairseq2``; ``contents``: the file's
    contents (None for directories)."""

    path: Path
    kind: str
    contents: Any = None


def directory_kind(path: Path) -> str | None:
    """``hf`` (``config.json``) or ``fairseq2`` (``model.yaml``) for a peer checkpoint directory, else None."""
    if not path.is_dir():
        return None
    if (path / "config.json").is_file():
        return "hf"
    if (path / "model.yaml").is_file() or (path.name.startswith("step_") and (path.parent / "model.yaml").is_file()):
        return "fairseq2"
    return None


def _file_kind(contents: Any) -> str | None:
    from audiossl.models.interop.fairseq import is_fairseq_checkpoint
    from audiossl.models.interop.fairseq2 import is_fairseq2_state
    from audiossl.models.interop.torchaudio import is_torchaudio_file

    if is_torchaudio_file(contents):
        return "torchaudio"
    if is_fairseq_checkpoint(contents):
        return "fairseq"
    if isinstance(contents, dict) and isinstance(contents.get("config"), dict) and "model" in contents:
        return "audiossl"
    if is_fairseq2_state(contents):
        return "fairseq2"
    return None


def open_checkpoint(path: str | Path, trusted: bool = False) -> OpenedCheckpoint:
    """Identify an audiossl or peer checkpoint; an HF weight file stands for its directory."""
    path = Path(path)
    if path.is_file() and path.name in HF_WEIGHT_FILES and (path.parent / "config.json").is_file():
        path = path.parent
    kind = directory_kind(path)
    if kind is not None:
        return OpenedCheckpoint(path, kind)
    if not path.is_file():
        raise InteropError(f"{path} is neither a checkpoint file nor an HF or fairseq2 checkpoint directory")
    contents = read_torch_file(path, trusted)
    kind = _file_kind(contents)
    if kind is None:
        raise InteropError(f"{path}: not a checkpoint audiossl recognises (audiossl, fairseq, fairseq2 or our "
                           "torchaudio format)")
    return OpenedCheckpoint(path, kind, contents)


def load_peer(checkpoint: str | Path | OpenedCheckpoint, trusted: bool = False) -> PeerModel:
    """Import a peer checkpoint (path or ``open_checkpoint`` result) as our encoder plus its heads."""
    opened = checkpoint if isinstance(checkpoint, OpenedCheckpoint) else open_checkpoint(checkpoint, trusted)
    if opened.kind == "hf":
        from audiossl.models.interop.hf import load_hf

        return load_hf(opened.path)
    if opened.kind == "fairseq":
        from audiossl.models.interop.fairseq import load_fairseq

        return load_fairseq(opened.path, opened.contents)
    if opened.kind == "torchaudio":
        from audiossl.models.interop.torchaudio import load_torchaudio

        return load_torchaudio(opened.path, opened.contents)
    if opened.kind == "fairseq2":
        from audiossl.models.interop.fairseq2 import load_fairseq2

        return load_fairseq2(opened.path, opened.contents)
    raise InteropError(f"{opened.path} is an audiossl checkpoint, not a peer's")


__all__ = ["CTCHead", "InteropError", "OpenedCheckpoint", "PeerModel", "PretrainingHead",
           "directory_kind", "load_peer", "open_checkpoint"]
