"""fairseq manifests: ``{split}.tsv`` plus one label file per kind, aligned line by line.

The format is fairseq's (``examples/wav2vec/wav2vec_manifest.py`` and ``libri_labels.py``) so that
manifests users already have load unchanged and ours load in fairseq:

* ``{split}.tsv``: line 1 is the root directory; every other line is ``relpath<TAB>num_samples``.
* ``{split}.{kind}``: one label line per tsv row, same order (``wrd``, ``ltr``, ``phn``, ``spk``, ``align``).
* ``dict.{kind}.txt``: ``symbol count`` lines, most frequent first (fairseq ``Dictionary.load``).
* ``{split}.rejected.tsv`` (ours): ``relpath<TAB>reason`` for audio kept out of the manifest.

Audio is validated here too (``probe_audio``) because a manifest row is a promise that the file decodes:
a file that cannot be read is rejected when the manifest is written, not hours into a training run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from audiossl.progress import progress_bar


class ManifestError(ValueError):
    """A manifest, label file or corpus file is malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class ManifestRow:
    """One audio file of a manifest: its path relative to the root line and its length in samples."""

    relpath: str
    num_samples: int


@dataclass(frozen=True)
class Reject:
    """A file kept out of a manifest, with the reason written to ``{split}.rejected.tsv``."""

    relpath: str
    reason: str


@dataclass(frozen=True)
class AudioInfo:
    """What ``soundfile.info`` says about a file: enough to size it and to flag non-16 kHz/mono audio."""

    frames: int
    sample_rate: int
    channels: int


@dataclass
class Manifest:
    """A loaded manifest: root directory, rows, and the label lines of each requested kind."""

    root: Path
    rows: list[ManifestRow]
    labels: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, tsv_path: str | Path, labels: Sequence[str] = ()) -> Manifest:
        """Read ``tsv_path`` and the label files ``{split}.{kind}`` next to it for each kind in ``labels``.

        Label files must have exactly one line per row: a mismatch means the files were written for
        different manifests, and silently zipping them would train on wrong transcripts.
        """
        tsv_path = Path(tsv_path)
        root, rows = read_tsv(tsv_path)
        loaded = {kind: read_label_file(label_path(tsv_path, kind), len(rows), tsv_path) for kind in labels}
        return cls(root=root, rows=rows, labels=loaded)

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, index: int) -> Path:
        return self.root / self.rows[index].relpath

    def total_seconds(self, sample_rate: int = 16_000) -> float:
        return sum(row.num_samples for row in self.rows) / sample_rate


def label_path(tsv_path: Path, kind: str) -> Path:
    """``train.tsv`` -> ``train.ltr``: fairseq finds labels by replacing the extension with the kind."""
    return tsv_path.with_suffix(f".{kind}")


def read_tsv(tsv_path: Path) -> tuple[Path, list[ManifestRow]]:
    """Parse a fairseq ``.tsv``; errors name the file and line, and say how to fix it."""
    if not tsv_path.is_file():
        raise ManifestError(f"manifest {tsv_path} does not exist")
    lines = tsv_path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip():
        raise ManifestError(f"{tsv_path}:1: the first line must be the root directory of the audio files")
    root = Path(lines[0].strip())
    if not root.is_dir():
        raise ManifestError(f"{tsv_path}:1: root directory {root} does not exist (edit line 1 or regenerate)")
    rows = [_parse_row(line, tsv_path, number) for number, line in enumerate(lines[1:], start=2)]
    return root, rows


def _parse_row(line: str, tsv_path: Path, number: int) -> ManifestRow:
    fields = line.strip().split("\t")
    if len(fields) != 2 or not fields[0]:
        raise ManifestError(
            f"{tsv_path}:{number}: expected 'relpath<TAB>num_samples', got {line!r}; a manifest without the size "
            "column (e.g. a plain file list) must be regenerated with audiossl-manifest or wav2vec_manifest.py"
        )
    relpath, size = fields
    if not size.isdigit():
        raise ManifestError(f"{tsv_path}:{number}: num_samples must be a non-negative integer, got {size!r}")
    return ManifestRow(relpath=relpath, num_samples=int(size))


def read_label_file(path: Path, expected_lines: int, tsv_path: Path) -> list[str]:
    if not path.is_file():
        raise ManifestError(f"label file {path} for manifest {tsv_path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != expected_lines:
        raise ManifestError(
            f"{path} has {len(lines)} lines but {tsv_path} has {expected_lines} rows; "
            "label files must align 1:1 with the manifest rows (regenerate them together)"
        )
    return lines


WORD_SEPARATOR = "|"
"""The word boundary of fairseq's letter labels (``.ltr``): every word is followed by one."""


def words_to_letters(words: str) -> str:
    """``HELLO WORLD`` -> ``H E L L O | W O R L D |``: the ``.ltr`` line for a ``.wrd`` line, as fairseq's
    ``libri_labels.py`` writes it."""
    return " ".join(" ".join(word) + f" {WORD_SEPARATOR}" for word in words.split())


def letters_to_words(tokens: Iterable[str], separator: str = WORD_SEPARATOR) -> str:
    """``H E L L O | W O R L D |`` (as tokens) -> ``HELLO WORLD``; repeated or trailing separators vanish.

    ``separator`` is there for peers' vocabularies whose word delimiter is another symbol.
    """
    text = "".join(" " if token == separator else token for token in tokens)
    return " ".join(text.split())


def parse_alignment(tokens: str, where: str) -> list[tuple[str, float, float]]:
    """An ``.align`` line, ``"AH:0.10:0.18 B:0.18:0.25"`` -> ``[("AH", 0.1, 0.18), ("B", 0.18, 0.25)]``.

    The one reader of the alignment label format (corpus ``.align.txt`` files, manifest ``.align`` files,
    the frame phone probe); a malformed token raises ``ManifestError`` naming ``where``.
    """
    segments = []
    for token in tokens.split():
        phone, *times = token.split(":")
        try:
            start, end = (float(value) for value in times)
        except ValueError:
            raise ManifestError(f"{where}: alignment token {token!r} is not PHONE:START:END (seconds)") from None
        segments.append((phone, start, end))
    return segments


def write_manifest(
    out_dir: str | Path,
    split: str,
    root: str | Path,
    rows: Sequence[ManifestRow],
    labels: Mapping[str, Sequence[str]],
) -> Path:
    """Write ``{split}.tsv`` and ``{split}.{kind}`` for every label kind; returns the tsv path.

    Lengths are checked before anything is written so that a bug upstream cannot leave a manifest
    whose labels are shifted against its audio.
    """
    out_dir = Path(out_dir)
    for kind, lines in labels.items():
        _check_label_lines(split, kind, lines, len(rows))
    out_dir.mkdir(parents=True, exist_ok=True)
    tsv_path = out_dir / f"{split}.tsv"
    body = [f"{row.relpath}\t{row.num_samples}" for row in rows]
    write_lines(tsv_path, [str(Path(root).resolve()), *body])
    for kind, lines in labels.items():
        write_lines(label_path(tsv_path, kind), lines)
    return tsv_path


def _check_label_lines(split: str, kind: str, lines: Sequence[str], expected: int) -> None:
    if len(lines) != expected:
        raise ManifestError(f"split {split}: {len(lines)} '{kind}' label lines for {expected} rows")
    for index, line in enumerate(lines):
        if "\n" in line or "\r" in line:
            raise ManifestError(f"split {split}: '{kind}' label of row {index} contains a line break: {line!r}")


def write_rejects(out_dir: str | Path, split: str, rejects: Sequence[Reject]) -> Path | None:
    """Write ``{split}.rejected.tsv``; with no rejects, remove a stale one so it never misleads."""
    path = Path(out_dir) / f"{split}.rejected.tsv"
    if not rejects:
        path.unlink(missing_ok=True)
        return None
    write_lines(path, [f"{reject.relpath}\t{reject.reason}" for reject in rejects])
    return path


def count_symbols(lines: Iterable[str]) -> Counter[str]:
    """Count space-separated symbols over label lines (the counts of a fairseq dictionary)."""
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(line.split())
    return counts


def write_dict(path: str | Path, counts: Mapping[str, int], extra_symbols: Iterable[str] = ()) -> Path:
    """Write a fairseq ``dict.*.txt``: ``symbol count``, count descending, ties by symbol (deterministic).

    ``extra_symbols`` not in ``counts`` are appended with count 0 so that a symbol seen only in dev/test
    (or a phone missing from a tiny training set) still gets its own index instead of ``<unk>``.
    """
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    unseen = sorted(set(extra_symbols) - set(counts))
    lines = [f"{symbol} {count}" for symbol, count in ranked] + [f"{symbol} 0" for symbol in unseen]
    path = Path(path)
    write_lines(path, lines)
    return path


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write through a temporary file and rename, so an interrupted run never leaves half a manifest."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line + "\n")
    os.replace(temporary, path)


def probe_audio(path: Path) -> AudioInfo | str:
    """``AudioInfo`` for a readable, non-empty file, else the reason it is rejected."""
    if not path.exists():
        return "missing file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # libsndfile raises several types for corrupt files; all mean "unreadable"
        return f"unreadable: {' '.join(str(error).split())}"
    frames = info.frames
    if frames >= UNKNOWN_LENGTH:  # the header does not say (a streamed FLAC, or a header with no audio)
        frames = _decoded_frames(path)
        if isinstance(frames, str):
            return frames
    if frames <= 0:
        return "empty (0 frames)" if info.frames <= 0 else "no audio after the header (length unknown, 0 frames decode)"
    return AudioInfo(frames=frames, sample_rate=info.samplerate, channels=info.channels)


UNKNOWN_LENGTH = 2**62
"""libsndfile reports 2**63 - 1 frames when a header leaves the length open; a manifest needs the true count."""


def _decoded_frames(path: Path) -> int | str:
    """Count frames by decoding, block by block (files whose header gives no length)."""
    try:
        with soundfile.SoundFile(str(path)) as handle:
            return sum(len(block) for block in handle.blocks(blocksize=65536))
    except Exception as error:  # as in probe_audio: any libsndfile failure means unreadable
        return f"unknown length (the header claims {UNKNOWN_LENGTH}+ frames) and decoding fails: {' '.join(str(error).split())}"


def probe_many(paths: Sequence[Path], workers: int = 2, desc: str = "probe audio") -> list[AudioInfo | str]:
    """``probe_audio`` over many files in a thread pool (libsndfile releases the GIL; I/O bound on big corpora)."""
    progress = progress_bar(total=len(paths), desc=desc, unit="file", disable=len(paths) < 1000, leave=False)
    with progress, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = []
        for result in pool.map(probe_audio, paths):
            results.append(result)
            progress.update()
    return results
