"""``audiossl-evaluate``: score fine-tuned runs on test splits and write one Markdown + JSON + PNG report.

    audiossl-evaluate checkpoint=runs/ft/w2v2                      # best.pt of a run (or a .pt file)
    audiossl-evaluate runs=[runs/ft/w2v2,runs/ft/random] names=[pretrained,random] decoders=[greedy,lm]
    audiossl-evaluate checkpoint=runs/ft/w2v2 lm.arpa=4-gram.arpa lm.lexicon=librispeech_lexicon.lst
    audiossl-evaluate checkpoint=hf/wav2vec2-base-960h manifest_dir=manifests/libri   # a peer's CTC model

Every run is rebuilt from its checkpoint alone. ``lm`` decoding (ASR) uses ``lm.arpa`` when given (e.g.
the LibriSpeech 4-gram), else an n-gram built with ``lm.build_arpa`` from the manifest's ``lm.text_split``
transcripts; the lexicon is written from the ARPA's words unless ``lm.lexicon`` names one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.config import ConfigError, check_choice, to_config
from audiossl.data.pipeline import AudioPipeline, DataConfig
from audiossl.asr.decode import BeamSettings, GreedyDecoder, LMBeamDecoder, write_lexicon
from audiossl.asr.lm import arpa_vocabulary, manifest_arpa, text_arpa
from audiossl.downstream.finetune import label_kinds
from audiossl.downstream.finetuned import SavedTask
from audiossl.downstream.peer_ctc import load_any_finetuned
from audiossl.downstream.lm_tuning import LMTuning, tune_beam
from audiossl.downstream.base import DownstreamTask
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.predict import Decoder, Prediction, predict_all
from audiossl.models.interop import InteropError
from audiossl.progress import progress_bar
from audiossl.reports.bench import probe_section
from audiossl.reports.report import write_report
from audiossl.training.distributed import resolve_device
from audiossl.reports.results import SystemResult, UtteranceResult, headline, save_results

DECODERS = ("greedy", "lm")
REPORT_TASK = {"asr": "asr", "phoneme": "phoneme", "phone_frames": "frames", "speaker": "speaker"}
DEFAULT_SPLITS = {"speaker": ["speaker_test"]}


@dataclass
class LMConfig:
    """The n-gram LM of ``decoders=[..., lm]`` and the beam search around it (flashlight knobs)."""

    arpa: str | None = None
    lexicon: str | None = None
    text: str | None = None  # a text file, one sentence per line, to build the n-gram from
    text_split: str = "train_clean"  # else this split's .wrd in the run's own manifest dir
    order: int = 3
    beam_size: int = 50
    beam_threshold: float = 25.0
    lm_weight: float = 2.0
    word_score: float = 1.0
    tune_split: str | None = "dev_clean"  # choose lm_weight x word_score on this split per run; null: as given
    tune_lm_weights: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0, 6.0])
    tune_word_scores: list[float] = field(default_factory=lambda: [-4.0, -2.0, -1.0, 0.0, 1.0])

    def settings(self) -> BeamSettings:
        return BeamSettings(beam_size=self.beam_size, beam_threshold=self.beam_threshold,
                            lm_weight=self.lm_weight, word_score=self.word_score)

    def source(self) -> str:
        """Where the n-gram comes from, as the report states it."""
        if self.arpa:
            return self.arpa
        return f"{self.order}-gram built from {self.text or f'{self.text_split} transcripts'}"


@dataclass
class EvaluateConfig:
    """``conf/evaluate.yaml``. ``checkpoint`` or ``runs`` (with optional display ``names``) say what to score.

    ``splits: null`` means the task's test splits (test_clean + test_other; speaker_test for speaker ID).
    ``manifest_dir: null`` reads each run's own manifests.
    """

    checkpoint: str | None = None
    runs: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    splits: list[str] | None = None
    decoders: list[str] = field(default_factory=lambda: ["greedy", "lm"])
    manifest_dir: str | None = None
    out_dir: str = "reports/evaluate"
    title: str = "audiossl evaluation"
    worst: int = 5
    max_batch_samples: int = 960_000
    device: str = "auto"  # auto: the GPU when there is one
    bench: str | None = None  # an audiossl-bench out_dir: its probe table goes into this report
    lm: LMConfig = field(default_factory=LMConfig)

    @property
    def _paths(self) -> list[str]:
        return ([self.checkpoint] if self.checkpoint else []) + list(self.runs)

    def validate(self) -> EvaluateConfig:
        if not self._paths:
            raise ConfigError("invalid config at 'checkpoint': give checkpoint=<run dir or .pt> or runs=[...]")
        if self.names and len(self.names) != len(self._paths):
            raise ConfigError(f"invalid config at 'names': {len(self.names)} names for {len(self._paths)} runs")
        for decoder in self.decoders:
            check_choice(decoder, DECODERS, "decoders")
        if "lm" in self.decoders and self.lm.tune_split:
            for key in ("tune_lm_weights", "tune_word_scores"):
                if not getattr(self.lm, key):
                    raise ConfigError(f"invalid config at 'lm.{key}': empty; give at least one value, or "
                                      "lm.tune_split=null to decode with lm.lm_weight / lm.word_score as given")
        return self

    def systems(self) -> list[tuple[str, str]]:
        """(display name, run path) pairs."""
        paths = self._paths
        names = self.names or [Path(p).name if Path(p).is_dir() else Path(p).parent.parent.name for p in paths]
        return list(zip(names, paths))


@dataclass
class LoadedRun:
    name: str
    task: DownstreamTask
    config: dict[str, Any]
    checkpoint: Path

    @property
    def task_name(self) -> str:
        return self.config["task"]["name"]

    @cached_property
    def saved(self) -> SavedTask:
        """Parsed once: evaluation reads the run's data config for every split and decoder."""
        return SavedTask.of(self.config, self.checkpoint)

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parent.parent


def load_run(name: str, path: str) -> LoadedRun:
    """Our fine-tuning run, or a peer's CTC checkpoint (HF ``*ForCTC`` directory, fine-tuned fairseq ``.pt``
    with ``dict.ltr.txt`` next to it, fairseq2 ASR checkpoint), which is scored on ``manifest_dir``."""
    try:
        task, config, checkpoint = load_any_finetuned(path)
    except (FileNotFoundError, InteropError) as error:
        raise ConfigError(f"invalid config at 'runs': {error}") from None
    return LoadedRun(name, task, config, checkpoint)


_LM_FILES: dict[tuple, tuple[Path, Path]] = {}


def lm_files(run: LoadedRun, cfg: EvaluateConfig) -> tuple[Path, Path]:
    """The ARPA and lexicon of the LM decoder (made once per vocabulary and LM; runs of one report share them).

    With no ``lm.arpa`` an n-gram is built from ``lm.text``, else from training transcripts of the run's own
    manifests (``lm.text_split``, or the run's training split when that split is not there): evaluation
    manifests (a new test set) need no training text."""
    data = run.saved.data
    key = (tuple(run.task.vocab.symbols), data.manifest_dir, data.train_split, cfg.lm.arpa, cfg.lm.lexicon,
           cfg.lm.text, cfg.lm.text_split, cfg.lm.order, cfg.out_dir)
    if key not in _LM_FILES:
        arpa = Path(cfg.lm.arpa) if cfg.lm.arpa else training_arpa(run, cfg.lm, Path(cfg.out_dir) / "lm")
        if not arpa.is_file():
            raise ConfigError(f"invalid config at 'lm.arpa': {arpa} does not exist")
        lexicon = (Path(cfg.lm.lexicon) if cfg.lm.lexicon
                   else write_lexicon(arpa_vocabulary(arpa), arpa.with_suffix(".lexicon"), vocab=run.task.vocab))
        _LM_FILES[key] = arpa, lexicon
    return _LM_FILES[key]


def lm_decoder(run: LoadedRun, cfg: EvaluateConfig, settings: BeamSettings) -> LMBeamDecoder:
    arpa, lexicon = lm_files(run, cfg)
    return LMBeamDecoder(run.task.vocab, arpa, lexicon, settings)


def tune_lm(run: LoadedRun, cfg: EvaluateConfig) -> LMTuning:
    """The run's LM weight and word score, chosen on ``lm.tune_split`` of the run's own manifests.

    The run's manifests, like the LM text: a new test set scored with ``manifest_dir`` needs no dev split,
    and its own utterances never choose the weights they are scored with.
    """
    split = str(cfg.lm.tune_split)
    manifest_dir = Path(run.saved.data.manifest_dir)
    if not (manifest_dir / f"{split}.tsv").is_file():
        raise ConfigError(f"invalid config at 'lm.tune_split': no {split}.tsv in the run's manifests {manifest_dir}; "
                          "name a dev split there, or lm.tune_split=null to decode with lm.lm_weight / lm.word_score")
    pipeline = AudioPipeline(split_data(run, manifest_dir, split, cfg), split, train=False)
    batches = progress_bar(pipeline, total=len(pipeline), desc=f"{run.name} LM tuning", unit="batch", leave=False)
    return tune_beam(run.task, batches, split, cfg.lm.settings(), lambda settings: lm_decoder(run, cfg, settings),
                     cfg.lm.tune_lm_weights, cfg.lm.tune_word_scores, device=str(resolve_device(cfg.device)))


def lm_text_split(run: LoadedRun, lm: LMConfig) -> str:
    """The split of the run's own manifests whose transcripts build the n-gram when neither ``lm.arpa`` nor
    ``lm.text`` is given: ``lm.text_split`` when it is there, else the run's training split."""
    manifest_dir = Path(run.saved.data.manifest_dir)
    return lm.text_split if (manifest_dir / f"{lm.text_split}.wrd").is_file() else run.saved.data.train_split


def training_arpa(run: LoadedRun, lm: LMConfig, out_dir: Path) -> Path:
    if lm.text is not None:
        if not Path(lm.text).is_file():
            raise ConfigError(f"invalid config at 'lm.text': {lm.text} does not exist")
        return text_arpa(lm.text, lm.order, out_dir)
    manifest_dir = Path(run.saved.data.manifest_dir)
    split = lm_text_split(run, lm)
    if not (manifest_dir / f"{split}.wrd").is_file():
        raise ConfigError(f"invalid config at 'lm.text': no {lm.text_split}.wrd or {split}.wrd in the run's manifests "
                          f"{manifest_dir}; name a text file (lm.text=...) or an ARPA (lm.arpa=...)")
    return manifest_arpa(manifest_dir, split, lm.order, out_dir)


def uses_lm(run: LoadedRun, cfg: EvaluateConfig) -> bool:
    return "lm" in cfg.decoders and isinstance(run.task, CTCTask) and run.task.vocab.is_letters


def decoders_for(run: LoadedRun, cfg: EvaluateConfig, lm_settings: BeamSettings) -> dict[str, Decoder] | None:
    """Greedy and/or LM for letter CTC runs; None (argmax) for classification tasks."""
    if not isinstance(run.task, CTCTask):
        return None
    chosen: dict[str, Decoder] = {}
    if "greedy" in cfg.decoders:
        chosen["greedy"] = GreedyDecoder(run.task.vocab)
    if uses_lm(run, cfg):
        chosen["lm"] = lm_decoder(run, cfg, lm_settings)
    return chosen


def split_data(run: LoadedRun, manifest_dir: Path, split: str, cfg: EvaluateConfig) -> DataConfig:
    """Every utterance of ``split`` in ``manifest_dir`` with the labels the run's task scores."""
    kinds = label_kinds(run.task_name, manifest_dir, [split])
    batch_samples = max(run.saved.data.max_batch_samples, cfg.max_batch_samples)
    data = replace(run.saved.data, manifest_dir=str(manifest_dir), max_batch_samples=batch_samples)
    return data.for_evaluation(kinds)


def evaluate_split(run: LoadedRun, split: str, cfg: EvaluateConfig, notes: list[str],
                   lm_settings: BeamSettings) -> list[SystemResult]:
    """Decode one split with every decoder; files the pipeline skipped become a note in the report."""
    manifest_dir = Path(cfg.manifest_dir or run.saved.data.manifest_dir)
    pipeline = AudioPipeline(split_data(run, manifest_dir, split, cfg), split, train=False)
    decoders = decoders_for(run, cfg, lm_settings)
    batches = progress_bar(pipeline, total=len(pipeline), desc=f"{run.name} {split}", unit="batch", leave=False)
    predicted = predict_all(run.task, batches, decoders, device=resolve_device(cfg.device))
    expected = pipeline.num_rows
    scored = len(next(iter(predicted.values()), []))
    if scored != expected:
        notes.append(f"{run.name} / {split}: {expected - scored} of {expected} utterances could not be read and are "
                     f"not scored:\n\n{pipeline.fault_report().table()}")
    return [SystemResult(run.name, split, decoder, REPORT_TASK[run.task_name], [_utterance(p) for p in predictions])
            for decoder, predictions in predicted.items()]


def _utterance(prediction: Prediction) -> UtteranceResult:
    return UtteranceResult(prediction.id, prediction.speaker, prediction.reference, prediction.hypothesis,
                           prediction.seconds)


def run_notes(run: LoadedRun) -> str:
    """Where a system came from: init, task mode, checkpoint and its dev score."""
    saved = run.saved
    return (f"**{run.name}**: `{run.checkpoint}`; task {run.task_name} ({run.config['task']['mode']}), "
            f"upstream {saved.upstream.kind} from `{saved.upstream.source}`, trained on "
            f"{saved.data.train_split}, step {int(run.task.updates)}.")


def evaluate(cfg: EvaluateConfig) -> tuple[Path, list[SystemResult]]:
    """Score every run on every split with every decoder; write the report; return its path and results."""
    device = resolve_device(cfg.device)
    runs = [load_run(name, path) for name, path in cfg.validate().systems()]
    for run in runs:
        run.task.to(device)
    notes = [run_notes(run) for run in runs]
    results: list[SystemResult] = []
    for run in runs:
        lm_settings = cfg.lm.settings()
        if uses_lm(run, cfg) and cfg.lm.tune_split:
            tuning = tune_lm(run, cfg)
            lm_settings = replace(lm_settings, lm_weight=tuning.best.lm_weight, word_score=tuning.best.word_score)
            notes.append(f"**{run.name}** LM weights tuned: {tuning.describe()}.")
        for split in cfg.splits or DEFAULT_SPLITS.get(run.task_name, ["test_clean", "test_other"]):
            results += evaluate_split(run, split, cfg, notes, lm_settings)
    if any(r.decoder == "lm" for r in results):
        weights = (f"lm_weight / word_score per system as tuned on {cfg.lm.tune_split}" if cfg.lm.tune_split
                   else f"lm_weight {cfg.lm.lm_weight}, word_score {cfg.lm.word_score}")
        notes.append(f"LM decoding: {cfg.lm.source()}, lexicon-constrained beam {cfg.lm.beam_size}, {weights}.")
    curves = {run.name: run.run_dir for run in runs if (run.run_dir / "metrics.jsonl").is_file()}
    save_results(Path(cfg.out_dir) / "results.json", results)
    probes = probe_section(cfg.bench) if cfg.bench else []
    return write_report(cfg.out_dir, results, cfg.title, curves, notes, cfg.worst, probes), results


def summary_lines(results: list[SystemResult]) -> list[str]:
    """One line per (system, split, decoder): the headline number as a percentage."""
    lines = []
    for result in results:
        value = headline(result)
        shown = "n/a" if math.isnan(value) else f"{100 * value:6.2f}"
        lines.append(f"{result.system:>16} {result.split:>14} {result.decoder:>7}  "
                     f"{result.scoring.headline.upper()} {shown}")
    return lines


@hydra_app("evaluate")
def main(node: Any) -> None:
    cfg = to_config(EvaluateConfig, node, "evaluate")
    path, results = evaluate(cfg)
    print("\n".join(summary_lines(results)))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
