"""Safe audio decoding: one file in, a mono float32 waveform or a named fault out, never an exception.

Why not let decode errors propagate: a real corpus always holds a few missing, empty or damaged files,
and in a fairseq2 data pipeline a single exception breaks the pipeline for good (its ``reset`` raises
too). So every failure mode is turned into a short *fault* name (a key of ``FAULTS``) plus a detail
message, and the caller decides what to do (the data pipeline skips, counts and reports the file).

Files at another sample rate or with several channels are faults by default, because silently
changing them hides a broken manifest; ``AudioPolicy.resample`` / ``AudioPolicy.downmix`` turn them
into conversions instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import soundfile
import torch
from torch import Tensor

FAULTS: dict[str, str] = {
    "missing": "file does not exist",
    "empty_file": "file has zero bytes",
    "unreadable": "not a recognised audio format (garbage or wrong extension)",
    "truncated": "decoding stopped early or gave fewer samples than the manifest says",
    "no_audio": "header only, zero samples",
    "wrong_sample_rate": "sample rate differs from the target (set resample_to_target to convert)",
    "multi_channel": "more than one channel (set downmix to average them)",
    "non_finite": "contains NaN or infinite samples",
    "too_short": "fewer samples than min_sample_size",
    "too_long": "more samples than max_sample_size (padding mode never crops)",
}
"""Every fault name the decoder and the pipeline can report, with what it means for the user."""


@dataclass(frozen=True)
class AudioPolicy:
    """What to do with audio that is readable but not in the target format."""

    sample_rate: int = 16_000
    resample: bool = False
    downmix: bool = False


class AudioReadResult(NamedTuple):
    """``waveform`` is 1-D float32 on success; otherwise None and ``fault`` names why."""

    waveform: Tensor | None
    fault: str | None = None
    detail: str = ""


_DECODE_ERRORS = (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError)
"""What libsndfile raises for unreadable input (permissions, unknown formats, broken streams)."""


def _failure(fault: str, detail: str = "") -> AudioReadResult:
    return AudioReadResult(None, fault, detail or FAULTS[fault])


def _check_file(path: str) -> AudioReadResult | None:
    """Name the failure when the file cannot even be opened; None when it can."""
    if not os.path.isfile(path):
        return _failure("missing")
    if os.path.getsize(path) == 0:
        return _failure("empty_file")
    return None


class _Decoded(NamedTuple):
    samples: np.ndarray  # (frames,) for mono files, (frames, channels) otherwise
    sample_rate: int
    header_frames: int
    floating: bool  # float WAV/AIFF can hold NaN or inf; integer PCM and FLAC cannot


def _header_fault(handle: soundfile.SoundFile, policy: AudioPolicy) -> AudioReadResult | None:
    """Reject by the header alone, before paying for decoding."""
    if handle.channels > 1 and not policy.downmix:
        return _failure("multi_channel", f"{handle.channels} channels")
    if handle.samplerate != policy.sample_rate and not policy.resample:
        return _failure("wrong_sample_rate", f"{handle.samplerate} Hz, expected {policy.sample_rate} Hz")
    return None


def _decode(path: str, policy: AudioPolicy) -> _Decoded | AudioReadResult:
    """Decode with libsndfile.

    Opening and reading are separated so a file whose header parses but whose stream breaks is
    reported as ``truncated`` rather than ``unreadable``.
    """
    try:
        handle = soundfile.SoundFile(path)
    except _DECODE_ERRORS as error:
        return _failure("unreadable", str(error))
    with handle:
        fault = _header_fault(handle, policy)
        if fault is not None:
            return fault
        try:
            samples = handle.read(dtype="float32", always_2d=handle.channels > 1)
        except _DECODE_ERRORS as error:
            return _failure("truncated", str(error))
        floating = handle.subtype in ("FLOAT", "DOUBLE")
        return _Decoded(samples, handle.samplerate, handle.frames, floating)


def _content_fault(decoded: _Decoded, expected_frames: int | None) -> AudioReadResult | None:
    frames = decoded.samples.shape[0]
    if frames == 0:
        return _failure("no_audio")
    wanted = max(decoded.header_frames, expected_frames or 0)
    if frames < wanted:
        return _failure("truncated", f"{frames} samples decoded, {wanted} expected")
    if decoded.floating and not np.isfinite(decoded.samples).all():
        return _failure("non_finite")
    return None


def _to_target(decoded: _Decoded, policy: AudioPolicy) -> Tensor:
    """Average channels and resample; the header check already refused what the policy does not allow."""
    mono = decoded.samples.mean(axis=1) if decoded.samples.ndim == 2 else decoded.samples
    waveform = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if decoded.sample_rate == policy.sample_rate:
        return waveform
    import torchaudio.functional  # noqa: PLC0415 (only needed by corpora with mixed rates)

    return torchaudio.functional.resample(waveform, decoded.sample_rate, policy.sample_rate)


def read_audio(path: str, policy: AudioPolicy, expected_frames: int | None = None) -> AudioReadResult:
    """Read ``path`` as mono float32 at ``policy.sample_rate``; never raises for a bad file.

    ``expected_frames`` is the manifest's sample count (in the file's own rate); fewer decoded frames
    than that means the file was cut after the manifest was written, reported as ``truncated``.
    """
    decoded = _check_file(path) or _decode(path, policy)
    if isinstance(decoded, AudioReadResult):
        return decoded
    fault = _content_fault(decoded, expected_frames)
    if fault is not None:
        return fault
    return AudioReadResult(_to_target(decoded, policy))
