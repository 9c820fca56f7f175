"""LibriSpeech-layout corpora -> fairseq manifests, few-label subsets and a held-out ``valid`` split.

Layout: ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` next to
``<speaker>-<chapter>.trans.txt`` (``<utt-id> UPPERCASE WORDS`` lines) and, in our synthetic corpus,
``<speaker>-<chapter>.align.txt`` (``<utt-id> PHONE:START:END ...``). Every manifest's root line is the
directory that holds the subsets, so rows of any subset (a held-out ``valid`` drawn from several
training subsets, say) share one root, and fairseq's ``libri_labels.py`` still finds the chapter of each
row from the last two directories of its path.

Transcripts are the ground truth of every WER we report, so a mismatch between audio and transcript
files stops the run with the file and line to fix; audio that cannot be read is only rejected
(``{split}.rejected.tsv``) because one corrupt file should not cost a corpus.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from audiossl.config import ConfigError, check_choice, check_positive
from audiossl.audio.espeak import SILENCE
from audiossl.data.lexicon import ARPABET_39, Lexicon
from audiossl.data.manifest import (
    AudioInfo,
    ManifestError,
    ManifestRow,
    Reject,
    count_symbols,
    parse_alignment,
    words_to_letters,
    probe_many,
    write_dict,
    write_manifest,
    write_rejects,
)

log = logging.getLogger(__name__)

MISMATCH_POLICIES = ("error", "reject")
TRANSCRIPT_WORDS = re.compile(r"[A-Z']+(?: [A-Z']+)*")
DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|min|h)")
SECONDS_PER_UNIT = {"s": 1.0, "min": 60.0, "h": 3600.0}
VALID_SPLIT = "valid"


@dataclass
class ManifestConfig:
    """``conf/manifest.yaml``. ``valid_percent`` is a fraction in [0, 1), as in fairseq's ``wav2vec_manifest.py``."""

    corpus_dir: str = "data/synth/LibriSpeech"
    out_dir: str = "manifests/synth"
    subsets: list[str] | None = None  # None: every subset found
    few_label_from: str | None = "train-clean"
    few_label: list[str] = field(default_factory=lambda: ["10min", "1h", "10h"])
    valid_percent: float = 0.0
    seed: int = 0
    workers: int = 2
    extension: str = "flac"
    on_missing_transcript: str = "error"  # an audio file with no transcript line: error | reject
    on_missing_audio: str = "error"  # a transcript line whose audio file does not exist: error | reject

    def validate(self) -> ManifestConfig:
        self.extension = self.extension.lstrip(".")
        check_choice(self.on_missing_transcript, MISMATCH_POLICIES, "manifest.on_missing_transcript")
        check_choice(self.on_missing_audio, MISMATCH_POLICIES, "manifest.on_missing_audio")
        check_positive(self.workers, "manifest.workers")
        if not 0.0 <= self.valid_percent < 1.0:
            raise ConfigError(f"invalid config at 'manifest.valid_percent': need 0 <= x < 1, got {self.valid_percent}")
        for name in self.few_label:
            parse_duration(name)
        return self


@dataclass(frozen=True)
class Utterance:
    """A readable audio file with everything its label lines are made of."""

    relpath: str
    speaker: str
    words: str
    info: AudioInfo
    alignment: str | None = None  # the ``PHONE:START:END`` tokens of its ``.align.txt`` line
    phones: str = ""

    @property
    def seconds(self) -> float:
        return self.info.frames / self.info.sample_rate


@dataclass
class Split:
    """Rows and rejects of one output split (``train_clean``, ``valid``, ``train_1h`` ...)."""

    name: str
    utterances: list[Utterance]
    rejects: list[Reject] = field(default_factory=list)


@dataclass(frozen=True)
class SplitSummary:
    """One row of the table the CLI prints after writing."""

    split: str
    rows: int
    hours: float
    speakers: int
    rejects: int


def split_name(subset: str) -> str:
    """``train-clean-100`` -> ``train_clean_100``: the split names fairseq configs expect."""
    return subset.replace("-", "_")


def parse_duration(name: str) -> float:
    """``10min`` / ``1h`` / ``30s`` -> seconds."""
    match = DURATION.fullmatch(name)
    if not match:
        raise ConfigError(f"invalid config at 'manifest.few_label': {name!r} is not a duration like 10min, 1h, 30s")
    return float(match[1]) * SECONDS_PER_UNIT[match[2]]


# ---------------------------------------------------------------------------------------------- scanning


def find_subsets(corpus_dir: Path, extension: str = "flac") -> tuple[Path, dict[str, Path]]:
    """``(root, {subset name: dir})``; ``corpus_dir`` may hold subsets or be one subset itself."""
    if not corpus_dir.is_dir():
        raise ManifestError(f"corpus directory {corpus_dir} does not exist")
    corpus_dir = corpus_dir.absolute()
    if _is_subset(corpus_dir, extension):
        return corpus_dir.parent, {corpus_dir.name: corpus_dir}
    found = {d.name: d for d in sorted(corpus_dir.iterdir()) if d.is_dir() and _is_subset(d, extension)}
    if not found:
        raise ManifestError(
            f"no LibriSpeech subset under {corpus_dir}: expected <subset>/<speaker>/<chapter>/*.{extension} "
            "with <speaker>-<chapter>.trans.txt (is corpus_dir the directory that holds train-clean-100 etc.?)"
        )
    return corpus_dir, found


def _is_subset(directory: Path, extension: str) -> bool:
    return any(directory.glob(f"*/*/*.{extension}")) or any(directory.glob("*/*/*.trans.txt"))


def select_subsets(found: dict[str, Path], wanted: Sequence[str] | None) -> dict[str, Path]:
    if wanted is None:
        return found
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ConfigError(f"invalid config at 'manifest.subsets': {missing} not found; found {sorted(found)}")
    return {name: found[name] for name in wanted}


def chapter_lines(path: Path, speaker: str, chapter: str) -> Iterator[tuple[str, str, int]]:
    """``(utt-id, rest of line, line number)`` for each non-blank line of a chapter's ``.trans.txt``/``.align.txt``.

    Ids are checked against the chapter directory and for duplicates, the two ways a transcript
    copied from another chapter silently mislabels audio.
    """
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        utt_id, _, rest = line.strip().partition(" ")
        _check_utterance_id(utt_id, speaker, chapter, f"{path}:{number}")
        if utt_id in first_line:
            raise ManifestError(f"{path}:{number}: utterance {utt_id} already on line {first_line[utt_id]}")
        first_line[utt_id] = number
        yield utt_id, " ".join(rest.split()), number


def read_transcripts(path: Path, speaker: str, chapter: str) -> dict[str, tuple[str, int]]:
    """``{utt-id: (words, line number)}``; malformed lines raise with ``file:line`` and what is expected."""
    transcripts = {}
    for utt_id, words, number in chapter_lines(path, speaker, chapter):
        _check_words(words, f"{path}:{number}")
        transcripts[utt_id] = (words, number)
    return transcripts


def _check_utterance_id(utt_id: str, speaker: str, chapter: str, where: str) -> None:
    prefix = f"{speaker}-{chapter}-"
    if utt_id.startswith(prefix) and re.fullmatch(r"\w+", utt_id[len(prefix) :]):
        return
    if re.fullmatch(r"\S+-\S+-\S+", utt_id):
        raise ManifestError(f"{where}: utterance id {utt_id} does not belong to chapter {speaker}-{chapter}")
    raise ManifestError(f"{where}: no utterance id; expected '{prefix}NNNN WORDS ...', got {utt_id!r} first")


def _check_words(words: str, where: str) -> None:
    if not words:
        raise ManifestError(f"{where}: no words after the utterance id")
    if not TRANSCRIPT_WORDS.fullmatch(words):
        invalid = sorted(set(re.sub(r"[A-Z' ]", "", words)))
        raise ManifestError(
            f"{where}: invalid characters {invalid} in {words!r}; transcripts must be uppercase A-Z and "
            "apostrophes (normalize the text as LibriSpeech does)"
        )


def read_alignments(path: Path, speaker: str, chapter: str) -> dict[str, str]:
    """``{utt-id: 'PHONE:START:END ...'}`` from an ``.align.txt``; bad tokens raise with ``file:line``."""
    alignments = {}
    for utt_id, tokens, number in chapter_lines(path, speaker, chapter):
        where = f"{path}:{number}"
        segments = parse_alignment(tokens, where)
        if not segments:
            raise ManifestError(f"{where}: expected PHONE:START:END tokens (seconds), got none")
        for segment in segments:
            _check_segment(segment, where)
        alignments[utt_id] = tokens
    return alignments


def _check_segment(segment: tuple[str, float, float], where: str) -> None:
    phone, start, end = segment
    if phone not in ARPABET_39 and phone != SILENCE:
        raise ManifestError(f"{where}: {phone!r} is not an ARPAbet-39 phone (no stress digits) or {SILENCE}")
    if not 0.0 <= start <= end:
        raise ManifestError(f"{where}: alignment segment {phone}:{start}:{end} needs 0 <= START <= END")


def alignment_phones(alignment: str, where: str) -> str:
    """The phone labels of an alignment line, silences dropped (they are not in the transcript)."""
    return " ".join(phone for phone, _, _ in parse_alignment(alignment, where) if phone != SILENCE)


@dataclass(frozen=True)
class _Pending:
    """An audio file paired with its transcript, not yet probed."""

    path: Path
    relpath: str
    speaker: str
    words: str
    alignment: str | None


def scan_chapter(chapter_dir: Path, root: Path, cfg: ManifestConfig) -> tuple[list[_Pending], list[Reject]]:
    """Pair the chapter's audio files with their transcript (and alignment) lines."""
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    audio = {path.name[: -len(cfg.extension) - 1]: path for path in sorted(chapter_dir.glob(f"*.{cfg.extension}"))}
    transcript_path = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    transcripts = read_transcripts(transcript_path, speaker, chapter) if transcript_path.is_file() else {}
    align_path = chapter_dir / f"{speaker}-{chapter}.align.txt"
    alignments = read_alignments(align_path, speaker, chapter) if align_path.is_file() else None
    pending, rejects = [], []
    for utt_id in sorted(audio.keys() | transcripts.keys()):
        relpath = _relpath(audio.get(utt_id) or chapter_dir / f"{utt_id}.{cfg.extension}", root)
        if utt_id not in transcripts:
            rejects.append(_missing_transcript(cfg, relpath, transcript_path, utt_id))
        elif utt_id not in audio:
            rejects.append(_missing_audio(cfg, relpath, transcript_path, transcripts[utt_id][1]))
        else:
            alignment = _alignment_for(alignments, align_path, utt_id)
            pending.append(_Pending(audio[utt_id], relpath, speaker, transcripts[utt_id][0], alignment))
    return pending, rejects


def _relpath(path: Path, root: Path) -> str:
    """Relative to the root as listed (not resolved), so a symlinked file keeps the name it was found under."""
    return path.relative_to(root).as_posix()


def _missing_transcript(cfg: ManifestConfig, relpath: str, transcript_path: Path, utt_id: str) -> Reject:
    if not transcript_path.is_file():
        problem = f"{transcript_path} does not exist, so {relpath} has no transcript"
    else:
        problem = f"{transcript_path}: no line for {utt_id}, the transcript of {relpath}"
    if cfg.on_missing_transcript == "error":
        raise ManifestError(f"{problem} (add it, delete the audio, or set on_missing_transcript=reject)")
    return Reject(relpath, "no transcript line")


def _missing_audio(cfg: ManifestConfig, relpath: str, transcript_path: Path, line: int) -> Reject:
    if cfg.on_missing_audio == "error":
        raise ManifestError(
            f"{transcript_path}:{line}: audio file {relpath} does not exist "
            "(restore it, delete the line, or set on_missing_audio=reject)"
        )
    return Reject(relpath, f"missing file (transcript line {line})")


def _alignment_for(alignments: dict[str, str] | None, path: Path, utt_id: str) -> str | None:
    if alignments is None:
        return None
    if utt_id not in alignments:
        raise ManifestError(f"{path}: no line for {utt_id}; an .align.txt must cover every utterance of its chapter")
    return alignments[utt_id]


def scan_subset(subset_dir: Path, root: Path, cfg: ManifestConfig) -> Split:
    """Scan every chapter of a subset and probe its audio; unreadable files become rejects."""
    pending: list[_Pending] = []
    rejects: list[Reject] = []
    for chapter_dir in sorted(path for path in subset_dir.glob("*/*") if path.is_dir()):
        chapter_pending, chapter_rejects = scan_chapter(chapter_dir, root, cfg)
        pending += chapter_pending
        rejects += chapter_rejects
    infos = probe_many([item.path for item in pending], cfg.workers, desc=f"probe {subset_dir.name}")
    utterances = []
    for item, info in zip(pending, infos):
        if isinstance(info, str):
            rejects.append(Reject(item.relpath, info))
        else:
            utterances.append(Utterance(item.relpath, item.speaker, item.words, info, item.alignment))
    return Split(split_name(subset_dir.name), utterances, sorted(rejects, key=lambda reject: reject.relpath))


# ---------------------------------------------------------------------------------------------- labels


def add_phones(splits: Sequence[Split], lexicon: Lexicon) -> None:
    """Fill ``Utterance.phones``: from the alignment when there is one (it matches the audio), else the lexicon.

    All words go through the lexicon at once so that out-of-vocabulary words cost one G2P call.
    """
    words = {w for s in splits for u in s.utterances if u.alignment is None for w in u.words.split()}
    pronunciations = {word: " ".join(phones) for word, phones in lexicon.pronounce_all(words).items()}
    for split in splits:
        split.utterances = [replace(u, phones=_phones_of(u, pronunciations)) for u in split.utterances]
    if lexicon.oov_words:
        shown = ", ".join(lexicon.oov_words[:10]) + (" ..." if len(lexicon.oov_words) > 10 else "")
        log.info(f"{len(lexicon.oov_words)} words not in CMUdict were phonemized by espeak-ng: {shown}")


def _phones_of(utterance: Utterance, pronunciations: dict[str, str]) -> str:
    if utterance.alignment is not None:
        return alignment_phones(utterance.alignment, utterance.relpath)
    return " ".join(pronunciations[word] for word in utterance.words.split())


LABELS = {
    "wrd": lambda utterance: utterance.words,
    "ltr": lambda utterance: words_to_letters(utterance.words),
    "phn": lambda utterance: utterance.phones,
    "spk": lambda utterance: utterance.speaker,
}


def label_lines(split: Split) -> dict[str, list[str]]:
    """One line per row for each label kind; ``align`` only when every row has an alignment."""
    labels = {kind: [label(u) for u in split.utterances] for kind, label in LABELS.items()}
    aligned = [u.alignment for u in split.utterances if u.alignment is not None]
    if split.utterances and len(aligned) == len(split.utterances):
        labels["align"] = aligned
    elif aligned:
        log.warning(f"{split.name}: {len(aligned)}/{len(split.utterances)} rows have an alignment; no .align written")
    return labels


# ---------------------------------------------------------------------------------------------- derived splits


def is_training(subset: str) -> bool:
    return subset.startswith("train")


def hold_out_valid(splits: dict[str, Split], fraction: float, seed: int) -> Split:
    """Move a seeded ``fraction`` of every training split's rows into ``valid`` (fairseq's ``--valid-percent``)."""
    # training subsets are named train*; a corpus that is a single subset is training data whatever its name
    train_names = [name for name in splits if is_training(name)] or (list(splits) if len(splits) == 1 else [])
    if not train_names:
        raise ConfigError(f"invalid config at 'manifest.valid_percent': no train* subset in {sorted(splits)}")
    held_out: list[Utterance] = []
    for name in train_names:
        rows = splits[name].utterances
        count = min(max(1, round(len(rows) * fraction)), len(rows) - 1)
        chosen = set(random.Random(f"{seed}:{name}").sample(range(len(rows)), max(count, 0)))
        held_out += [row for index, row in enumerate(rows) if index in chosen]
        splits[name].utterances = [row for index, row in enumerate(rows) if index not in chosen]
    return Split(VALID_SPLIT, sorted(held_out, key=lambda utterance: utterance.relpath))


def speaker_round_robin(utterances: Sequence[Utterance], seed: int) -> list[Utterance]:
    """A seeded order that takes one utterance per speaker in turn, so every prefix is speaker-balanced."""
    rng = random.Random(seed)
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in sorted(utterances, key=lambda u: u.relpath):
        by_speaker[utterance.speaker].append(utterance)
    speakers = sorted(by_speaker)
    rng.shuffle(speakers)
    queues = [rng.sample(by_speaker[speaker], len(by_speaker[speaker])) for speaker in speakers]
    rounds = itertools.zip_longest(*queues)
    return [utterance for turn in rounds for utterance in turn if utterance is not None]


def few_label_splits(source: Split, names: Sequence[str], seed: int) -> list[Split]:
    """Libri-light-style ``train_10min`` / ``train_1h`` / ``train_10h``: nested prefixes of one balanced order.

    Each subset is the shortest prefix reaching its duration, so a smaller one is always inside a
    larger one; a target longer than the source is skipped rather than padded with repeated audio.
    """
    order = speaker_round_robin(source.utterances, seed)
    cumulative = list(itertools.accumulate(u.seconds for u in order))
    total = cumulative[-1] if cumulative else 0.0
    splits = []
    for name in sorted(names, key=parse_duration):
        target = parse_duration(name)
        if target > total + 1e-9:
            log.warning(f"few-label subset {name} skipped: {source.name} has only {total / 3600:.3f} h of audio")
            continue
        prefix = order[: bisect.bisect_left(cumulative, target - 1e-9) + 1]
        splits.append(Split(f"train_{name}", sorted(prefix, key=lambda u: u.relpath)))
    return splits


# ---------------------------------------------------------------------------------------------- writing


def write_split(out_dir: Path, root: Path, split: Split) -> SplitSummary:
    rows = [ManifestRow(u.relpath, u.info.frames) for u in split.utterances]
    labels = label_lines(split)
    remove_split_files(out_dir, split.name, kinds=[] if "align" in labels else ["align"])
    write_manifest(out_dir, split.name, root, rows, labels)
    write_rejects(out_dir, split.name, split.rejects)
    _warn_about_format(split)
    if split.rejects:
        log.warning(f"{split.name}: {len(split.rejects)} files rejected, see {out_dir / f'{split.name}.rejected.tsv'}")
    return summarize(split)


SPLIT_FILES = ("tsv", *LABELS, "align", "rejected.tsv")


def remove_split_files(out_dir: Path, split: str, kinds: Sequence[str] = SPLIT_FILES) -> None:
    """Delete files an earlier run wrote for ``split`` that this run will not rewrite, so none is left stale."""
    for kind in kinds:
        (out_dir / f"{split}.{kind}").unlink(missing_ok=True)


def _warn_about_format(split: Split) -> None:
    """Non-16 kHz or multi-channel audio stays in (the pipeline resamples/downmixes by config) but is flagged."""
    formats = Counter((u.info.sample_rate, u.info.channels) for u in split.utterances)
    formats.pop((16_000, 1), None)
    if formats:
        detail = ", ".join(f"{n} at {rate} Hz x {channels} ch" for (rate, channels), n in sorted(formats.items()))
        log.warning(f"{split.name}: {sum(formats.values())} files are not 16 kHz mono ({detail})")


def summarize(split: Split) -> SplitSummary:
    hours = sum(u.seconds for u in split.utterances) / 3600
    speakers = len({u.speaker for u in split.utterances})
    return SplitSummary(split.name, len(split.utterances), hours, speakers, len(split.rejects))


def write_dictionaries(out_dir: Path, training: Sequence[Split], every: Sequence[Split]) -> None:
    """``dict.ltr.txt`` / ``dict.phn.txt`` counted on the training splits (as fairseq's are).

    Symbols seen only outside training (and, for phones, all of ARPAbet-39) are appended with count 0,
    so dev/test labels never map to ``<unk>`` and phone probes always have the same 39 classes.
    """
    for kind, always in (("ltr", ()), ("phn", ARPABET_39)):
        counted = count_symbols(LABELS[kind](u) for split in training for u in split.utterances)
        seen = count_symbols(LABELS[kind](u) for split in every for u in split.utterances)
        write_dict(out_dir / f"dict.{kind}.txt", counted, [*seen, *always])


def build_manifests(cfg: ManifestConfig, lexicon: Lexicon | None = None) -> list[SplitSummary]:
    """Scan ``cfg.corpus_dir`` and write every split, few-label subset and dictionary into ``cfg.out_dir``."""
    root, subsets = find_subsets(Path(cfg.corpus_dir), cfg.extension)
    chosen = select_subsets(subsets, cfg.subsets)
    _check_few_label_source(cfg, chosen)
    splits = {name: scan_subset(directory, root, cfg) for name, directory in chosen.items()}
    add_phones(list(splits.values()), lexicon or Lexicon())
    derived = _derived_splits(cfg, splits)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    every = [*splits.values(), *derived]
    summaries = [write_split(out_dir, root, split) for split in every]
    for skipped in {f"train_{name}" for name in cfg.few_label} - {split.name for split in derived}:
        remove_split_files(out_dir, skipped)
    training = [split for name, split in splits.items() if is_training(name)]
    if not training:
        log.info("no subset named train*: the dictionaries count every split")
    write_dictionaries(out_dir, training or every, every)
    return summaries


def _check_few_label_source(cfg: ManifestConfig, chosen: dict[str, Path]) -> None:
    """Fail before scanning (minutes on a big corpus) when the few-label source subset is not there."""
    if cfg.few_label and cfg.few_label_from is not None and cfg.few_label_from not in chosen:
        raise ConfigError(
            f"invalid config at 'manifest.few_label_from': subset {cfg.few_label_from!r} not among {sorted(chosen)} "
            "(name one of them, or set few_label_from=null to skip few-label subsets)"
        )


def _derived_splits(cfg: ManifestConfig, splits: dict[str, Split]) -> list[Split]:
    derived = []
    if cfg.valid_percent > 0:
        if VALID_SPLIT in {split.name for split in splits.values()}:
            raise ConfigError("invalid config at 'manifest.valid_percent': the corpus already has a 'valid' subset")
        derived.append(hold_out_valid(splits, cfg.valid_percent, cfg.seed))
    if cfg.few_label and cfg.few_label_from is not None:
        derived += few_label_splits(splits[cfg.few_label_from], cfg.few_label, cfg.seed)
    return derived


def summary_table(summaries: Sequence[SplitSummary]) -> str:
    """A fixed-width table of the written splits, for the end of the CLI run."""
    header = f"{'split':<20} {'rows':>8} {'hours':>9} {'speakers':>9} {'rejects':>8}"
    lines = [header, "-" * len(header)]
    for s in summaries:
        lines.append(f"{s.split:<20} {s.rows:>8} {s.hours:>9.3f} {s.speakers:>9} {s.rejects:>8}")
    return "\n".join(lines)
