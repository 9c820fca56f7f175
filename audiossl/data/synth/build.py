"""Build the embedded synthetic corpus: plan speakers and chapters, synthesize in processes, write files.

Why one fresh process per chapter: espeak-ng keeps static state that no API call resets (the pitch
flutter phase and some wave-generator state), so a waveform depends slightly on what the process
synthesized before. Each chapter therefore runs in a newly forked worker (``maxtasksperchild=1``,
forked from a clean ``forkserver`` that never loaded espeak) and synthesizes its utterances in a fixed
order; with every random draw seeded from (seed, split, speaker, chapter, utterance), the bytes do
not depend on the number of workers or on scheduling.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audiossl.audio.corrupt import NOISE_KINDS, CorruptionConfig, corrupt, mix_talkers
from audiossl.audio.espeak import SAMPLE_RATE, SynthesisResult, synthesize
from audiossl.config import ConfigError, check_choice
from audiossl.data.synth.grammar import Sentence, SentenceGrammar, build_vocabulary
from audiossl.data.synth.layout import (
    Utterance,
    chapter_dir,
    utterance_id,
    write_chapter,
    write_speakers_txt,
)
from audiossl.data.synth.speakers import Speaker, draw_speakers, jittered_voice, usable_accents, usable_variants
from audiossl.progress import progress_bar

SPLITS = ("train-clean", "dev-clean", "dev-other", "test-clean", "test-other")
FORMAT_VERSION = 1  # bump when a code change alters the bytes, so old corpora get rebuilt
PEAK = 0.95  # utterances louder than this are scaled down so PCM_16 never clips


@dataclass
class SynthConfig:
    """What to build; ``size`` scales durations (linearly) and speaker counts (by its square root)."""

    out_dir: str = "data/synth"
    size: float = 1.0
    seed: int = 0
    workers: int = 2
    train_hours: float = 2.0
    eval_minutes: float = 10.0  # per dev/test split
    train_speakers: int = 40
    eval_speakers: int = 8  # per dev/test split
    chapters_per_speaker: int = 2
    vocab_size: int = 4000  # frequent words considered; about 3k survive the grammar's word classes
    min_words: int = 5
    max_words: int = 20
    variants: list[str] = field(default_factory=list)  # empty = speakers.HUMAN_VARIANTS
    accents: list[str] = field(default_factory=list)  # empty = every bundled English accent
    corrupt_train: bool = False
    corrupt_train_fraction: float = 0.5
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    force: bool = False  # rebuild even when corpus.json says the same corpus is already there

    def content(self) -> dict:
        """The fields that decide the bytes written (not where, how fast, or whether to force)."""
        return {k: v for k, v in asdict(self).items() if k not in ("out_dir", "workers", "force")}


@dataclass
class SplitSummary:
    speakers: int = 0
    chapters: int = 0
    utterances: int = 0
    seconds: float = 0.0

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


@dataclass
class CorpusSummary:
    out_dir: str
    splits: dict[str, SplitSummary]
    build_seconds: float = 0.0
    reused: bool = False  # True when an identical corpus was found and nothing was rebuilt

    def table(self) -> str:
        rows = [f"{'split':<12} {'speakers':>8} {'chapters':>8} {'utts':>6} {'hours':>7}"]
        for name, s in self.splits.items():
            rows.append(f"{name:<12} {s.speakers:>8} {s.chapters:>8} {s.utterances:>6} {s.hours:>7.3f}")
        verb = "reused existing corpus" if self.reused else f"built in {self.build_seconds:.1f} s"
        return "\n".join(rows + [f"{verb}: {self.out_dir}/LibriSpeech"])


@dataclass(frozen=True)
class ChapterTask:
    speaker: Speaker
    chapter: int
    budget_s: float  # synthesize utterances until this much audio exists (at least one)
    corrupt_fraction: float  # share of utterances that get corruptions (1.0 for -other splits)
    seed: int
    split_index: int


@dataclass
class ChapterResult:
    task: ChapterTask
    utterances: int
    seconds: float
    corruption_log: list[str]


def build_corpus(cfg: SynthConfig) -> CorpusSummary:
    """Build (or reuse) the corpus described by ``cfg`` under ``cfg.out_dir``."""
    _validate(cfg)
    root = Path(cfg.out_dir)
    existing = _existing_summary(root, cfg)
    if existing is not None:
        return existing
    start = time.perf_counter()
    speakers, tasks = plan(cfg)
    _clear(root)
    results = _run_tasks(tasks, cfg)
    summary = _summarize(root, speakers, results)
    _write_metadata(root, cfg, speakers, results, summary)
    summary.build_seconds = time.perf_counter() - start
    return summary


def _validate(cfg: SynthConfig) -> None:

    checks = {"size": cfg.size, "workers": cfg.workers, "train_hours": cfg.train_hours,
              "eval_minutes": cfg.eval_minutes, "chapters_per_speaker": cfg.chapters_per_speaker}  # fmt: skip
    for key, value in checks.items():
        if value <= 0:
            raise ConfigError(f"invalid config at 'synth.{key}': must be > 0, got {value}")
    if cfg.seed < 0:
        raise ConfigError(f"invalid config at 'synth.seed': must be >= 0, got {cfg.seed}")
    if not 0.0 <= cfg.corrupt_train_fraction <= 1.0:
        raise ConfigError("invalid config at 'synth.corrupt_train_fraction': must be in [0, 1]")
    if not 1 <= cfg.min_words <= cfg.max_words:
        raise ConfigError("invalid config at 'synth.min_words': need 1 <= min_words <= max_words")
    check_voices(cfg.variants, cfg.accents, cfg.corruption, "synth")


def check_voices(variants: list[str], accents: list[str], corruption: CorruptionConfig | None, section: str) -> None:
    """The voice and corruption keys of every synthesis config (the corpus's, the clip sets'; not all corrupt)."""
    for key, wanted, check in (("variants", variants, usable_variants), ("accents", accents, usable_accents)):
        try:
            check(wanted)
        except ValueError as error:
            raise ConfigError(f"invalid config at '{section}.{key}': {error}") from None
    for kind in corruption.noise_kinds if corruption else []:
        check_choice(kind, NOISE_KINDS, f"{section}.corruption.noise_kinds")


def plan(cfg: SynthConfig) -> tuple[list[Speaker], list[ChapterTask]]:
    """Speakers per split and one task per (speaker, chapter); a pure function of ``cfg``."""
    rng = np.random.default_rng([cfg.seed, 7919])
    scale = math.sqrt(cfg.size)
    counts = {split: max(2, round((cfg.train_speakers if split == "train-clean" else cfg.eval_speakers) * scale))
              for split in SPLITS}  # fmt: skip
    speakers = draw_speakers(counts, rng, usable_variants(cfg.variants), usable_accents(cfg.accents))
    tasks = []
    for spk in speakers:
        split_seconds = cfg.size * (cfg.train_hours * 3600 if spk.split == "train-clean" else cfg.eval_minutes * 60)
        budget = split_seconds / (counts[spk.split] * cfg.chapters_per_speaker)
        fraction = _corrupt_fraction(spk.split, cfg)
        for _ in range(cfg.chapters_per_speaker):
            chapter = 1000 + len(tasks)  # unique over the corpus, like LibriSpeech chapter ids
            tasks.append(ChapterTask(spk, chapter, budget, fraction, cfg.seed, SPLITS.index(spk.split)))
    return speakers, tasks


def _corrupt_fraction(split: str, cfg: SynthConfig) -> float:
    if split.endswith("-other"):
        return 1.0
    return cfg.corrupt_train_fraction if split == "train-clean" and cfg.corrupt_train else 0.0


def _run_tasks(tasks: list[ChapterTask], cfg: SynthConfig) -> list[ChapterResult]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    grammar = SentenceGrammar(build_vocabulary(cfg.vocab_size), cfg.min_words, cfg.max_words)
    init_args = (grammar, cfg.corruption, str(Path(cfg.out_dir)))
    total = sum(t.budget_s for t in tasks)
    results = []
    pool = ProcessPoolExecutor(cfg.workers, context, _init_worker, init_args, max_tasks_per_child=1)
    with pool, progress_bar(total=round(total), unit="s", desc="synth audio", dynamic_ncols=True) as bar:
        for future in as_completed([pool.submit(_synthesize_chapter, task) for task in tasks]):
            result = future.result()
            results.append(result)
            bar.update(round(result.seconds))
            bar.set_postfix(chapters=f"{len(results)}/{len(tasks)}")
    return sorted(results, key=lambda r: r.task.chapter)


# ---- worker side: one chapter per fresh process ------------------------------------------------

_WORKER: dict = {}


def _init_worker(grammar: SentenceGrammar, corruption: CorruptionConfig, root: str) -> None:
    """Runs in each fresh worker; the grammar is built once in the parent (CMUdict takes ~1 s to load)."""
    _WORKER.update(grammar=grammar, corruption=corruption, root=Path(root))


def _synthesize_chapter(task: ChapterTask) -> ChapterResult:
    spk, utterances, seconds = task.speaker, [], 0.0
    while not utterances or seconds < task.budget_s:
        rng = np.random.default_rng([task.seed, task.split_index, spk.id, task.chapter, len(utterances)])
        utt = _make_utterance(task, utterance_id(spk.id, task.chapter, len(utterances)), rng)
        utterances.append(utt)
        seconds += utt.seconds
    write_chapter(chapter_dir(_WORKER["root"], spk.split, spk.id, task.chapter), spk.id, task.chapter, utterances)
    log = [f"{u.id}\t{' '.join(u.corruptions) or 'clean'}" for u in utterances]
    return ChapterResult(task, len(utterances), seconds, log)


def _make_utterance(task: ChapterTask, utt_id: str, rng: np.random.Generator) -> Utterance:
    sentence, result = _speak(task.speaker, rng)
    wave, phones, applied = result.waveform, result.phones, []
    if rng.random() < task.corrupt_fraction:
        out = corrupt(wave, phones, rng, _WORKER["corruption"], SAMPLE_RATE, babble=_babble)
        wave, phones, applied = out.waveform, out.phones, out.applied
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    if peak > PEAK:
        wave = wave * (PEAK / peak)
    return Utterance(utt_id, sentence.transcript, wave.astype(np.float32), phones, applied)


def _speak(speaker: Speaker, rng: np.random.Generator, tries: int = 5) -> tuple[Sentence, SynthesisResult]:
    """A sentence and its synthesis, redrawn when espeak reports more words than the transcript has.

    More words means espeak expanded something (a spelled-out abbreviation) that the transcript
    does not show. Fewer is fine: espeak's dictionary joins pairs such as "on the" into one word.
    """
    for _ in range(tries):
        sentence = _WORKER["grammar"].sample(rng)
        result = synthesize(sentence.text, speaker.voice, seed=int(rng.integers(2**31)))
        if result.words <= len(sentence.words):
            break
    return sentence, result


def _babble(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """3-6 other synthetic talkers (random accents and variants) speaking other sentences."""
    talkers = []
    for _ in range(int(rng.integers(3, 7))):
        voice = jittered_voice(str(rng.choice(usable_accents())), str(rng.choice(usable_variants())), rng)
        text = _WORKER["grammar"].sample(rng).text
        talkers.append(synthesize(text, voice, seed=int(rng.integers(2**31))).waveform)
    return mix_talkers(talkers, n_samples)


# ---- metadata ------------------------------------------------------------------------------------


def _summarize(root: Path, speakers: list[Speaker], results: list[ChapterResult]) -> CorpusSummary:
    splits = {name: SplitSummary() for name in SPLITS}
    for spk in speakers:
        splits[spk.split].speakers += 1
    for r in results:
        s = splits[r.task.speaker.split]
        s.chapters, s.utterances, s.seconds = s.chapters + 1, s.utterances + r.utterances, s.seconds + r.seconds
    return CorpusSummary(out_dir=str(root), splits=splits)


def _write_metadata(
    root: Path, cfg: SynthConfig, speakers: list[Speaker], results: list[ChapterResult], summary: CorpusSummary
) -> None:
    """SPEAKERS.TXT, per-split corruption logs, and last corpus.json (its presence marks a finished build)."""
    minutes: dict[int, float] = {}
    for r in results:
        minutes[r.task.speaker.id] = minutes.get(r.task.speaker.id, 0.0) + r.seconds / 60.0
    write_speakers_txt(root / "LibriSpeech" / "SPEAKERS.TXT", speakers, minutes)
    (root / "corruptions").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        lines = [line for r in results if r.task.speaker.split == split for line in r.corruption_log]
        (root / "corruptions" / f"{split}.tsv").write_text("".join(line + "\n" for line in lines))
    record = {"format_version": FORMAT_VERSION, "config": cfg.content(), "versions": _versions(),
              "summary": {name: asdict(s) for name, s in summary.splits.items()}}  # fmt: skip
    (root / "corpus.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _existing_summary(root: Path, cfg: SynthConfig) -> CorpusSummary | None:
    """The recorded summary when ``corpus.json`` matches ``cfg`` and the split folders exist."""
    record_path = root / "corpus.json"
    if cfg.force or not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        same = (record["format_version"], record["config"], record["versions"]) == (
            FORMAT_VERSION, cfg.content(), _versions()
        )
        splits = {name: SplitSummary(**record["summary"][name]) for name in SPLITS}
    except (json.JSONDecodeError, KeyError, TypeError):
        return None  # unreadable or from another version: rebuild
    if not same or not all((root / "LibriSpeech" / split).is_dir() for split in SPLITS):
        return None
    return CorpusSummary(out_dir=str(root), splits=splits, reused=True)


def _versions() -> dict[str, str]:
    """Packages whose upgrade changes the bytes (voices, word lists, resampler, FLAC encoder)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("espeakng-loader", "wordfreq", "cmudict", "soxr", "soundfile", "scipy", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    return found


def _clear(root: Path) -> None:
    """Remove only what a previous build of ours wrote, so a half-built corpus never mixes with a new one."""
    (root / "corpus.json").unlink(missing_ok=True)
    for split in SPLITS:
        shutil.rmtree(root / "LibriSpeech" / split, ignore_errors=True)
    shutil.rmtree(root / "corruptions", ignore_errors=True)
    (root / "LibriSpeech" / "SPEAKERS.TXT").unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
