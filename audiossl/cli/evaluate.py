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
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path
from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.cli.finetune import eval_data_config, label_kinds
from audiossl.config import ConfigError, check_choice, to_config
from audiossl.data.pipeline import AudioPipeline, DataConfig
from audiossl.downstream.decode import BeamSettings, GreedyDecoder, LMBeamDecoder, write_lexicon
from audiossl.downstream.lm import arpa_vocabulary, manifest_arpa, text_arpa
from audiossl.downstream.interop import load_any_finetuned
from audiossl.downstream.tasks import CTCTask, Decoder, DownstreamTask, Prediction, predict_all
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

    def systems(self) -> list[tuple[str, str]]:
        """(display name, run path) pairs, checked."""
        paths = ([self.checkpoint] if self.checkpoint else []) + list(self.runs)
        if not paths:
            raise ConfigError("invalid config at 'checkpoint': give checkpoint=<run dir or .pt> or runs=[...]")
        if self.names and len(self.names) != len(paths):
            raise ConfigError(f"invalid config at 'names': {len(self.names)} names for {len(paths)} runs")
        for decoder in self.decoders:
            check_choice(decoder, DECODERS, "decoders")
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

    @property
    def data(self) -> DataConfig:
        return to_config(DataConfig, self.config["downstream"]["data"], "downstream.data")

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


_LM_DECODERS: dict[tuple, LMBeamDecoder] = {}


def lm_decoder(run: LoadedRun, cfg: EvaluateConfig) -> LMBeamDecoder:
    """The LM beam decoder (loaded once per vocabulary and LM; runs of one report share it)."""
    key = (tuple(run.task.vocab.symbols), run.data.manifest_dir, run.data.train_split, astuple(cfg.lm), cfg.out_dir)
    if key not in _LM_DECODERS:
        _LM_DECODERS[key] = _build_lm_decoder(run, cfg)
    return _LM_DECODERS[key]


def _build_lm_decoder(run: LoadedRun, cfg: EvaluateConfig) -> LMBeamDecoder:
    """With no ``lm.arpa`` an n-gram is built from ``lm.text``, else from training transcripts of the run's own
    manifests (``lm.text_split``, or the run's training split when that split is not there): evaluation
    manifests (a new test set) need no training text."""
    arpa = Path(cfg.lm.arpa) if cfg.lm.arpa else training_arpa(run, cfg.lm, Path(cfg.out_dir) / "lm")
    if not arpa.is_file():
        raise ConfigError(f"invalid config at 'lm.arpa': {arpa} does not exist")
    lexicon = (Path(cfg.lm.lexicon) if cfg.lm.lexicon
               else write_lexicon(arpa_vocabulary(arpa), arpa.with_suffix(".lexicon"), vocab=run.task.vocab))
    settings = BeamSettings(beam_size=cfg.lm.beam_size, beam_threshold=cfg.lm.beam_threshold,
                            lm_weight=cfg.lm.lm_weight, word_score=cfg.lm.word_score)
    return LMBeamDecoder(run.task.vocab, arpa, lexicon, settings)


def training_arpa(run: LoadedRun, lm: LMConfig, out_dir: Path) -> Path:
    if lm.text is not None:
        if not Path(lm.text).is_file():
            raise ConfigError(f"invalid config at 'lm.text': {lm.text} does not exist")
        return text_arpa(lm.text, lm.order, out_dir)
    manifest_dir = Path(run.data.manifest_dir)
    split = lm.text_split if (manifest_dir / f"{lm.text_split}.wrd").is_file() else run.data.train_split
    if not (manifest_dir / f"{split}.wrd").is_file():
        raise ConfigError(f"invalid config at 'lm.text': no {lm.text_split}.wrd or {split}.wrd in the run's manifests "
                          f"{manifest_dir}; name a text file (lm.text=...) or an ARPA (lm.arpa=...)")
    return manifest_arpa(manifest_dir, split, lm.order, out_dir)


def decoders_for(run: LoadedRun, cfg: EvaluateConfig) -> dict[str, Decoder] | None:
    """Greedy and/or LM for letter CTC runs; None (argmax) for classification tasks."""
    if not isinstance(run.task, CTCTask):
        return None
    chosen: dict[str, Decoder] = {}
    if "greedy" in cfg.decoders:
        chosen["greedy"] = GreedyDecoder(run.task.vocab)
    if "lm" in cfg.decoders and run.task.vocab.is_letters:
        chosen["lm"] = lm_decoder(run, cfg)
    return chosen


def evaluate_split(run: LoadedRun, split: str, cfg: EvaluateConfig, notes: list[str]) -> list[SystemResult]:
    """Decode one split with every decoder; files the pipeline skipped become a note in the report."""
    data = run.data
    manifest_dir = Path(cfg.manifest_dir or data.manifest_dir)
    kinds = label_kinds(run.task_name, manifest_dir, [split])
    data = eval_data_config(replace(data, manifest_dir=str(manifest_dir)), kinds, cfg.max_batch_samples)
    pipeline = AudioPipeline(data, split, train=False)
    decoders = decoders_for(run, cfg)
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
    upstream = run.config["downstream"]["upstream"]
    return (f"**{run.name}**: `{run.checkpoint}`; task {run.task_name} ({run.config['task']['mode']}), "
            f"upstream {upstream['kind']} from `{upstream['source']}`, trained on "
            f"{run.config['downstream']['data']['train_split']}, step {int(run.task.updates)}.")


def evaluate(cfg: EvaluateConfig) -> tuple[Path, list[SystemResult]]:
    """Score every run on every split with every decoder; write the report; return its path and results."""
    device = resolve_device(cfg.device)
    runs = [load_run(name, path) for name, path in cfg.systems()]
    for run in runs:
        run.task.to(device)
    notes = [run_notes(run) for run in runs]
    results: list[SystemResult] = []
    for run in runs:
        for split in cfg.splits or DEFAULT_SPLITS.get(run.task_name, ["test_clean", "test_other"]):
            results += evaluate_split(run, split, cfg, notes)
    if any(r.decoder == "lm" for r in results):
        notes.append(f"LM decoding: {cfg.lm.arpa or f'{cfg.lm.order}-gram built from {cfg.lm.text_split} transcripts'}, "
                     f"beam {cfg.lm.beam_size}, lm_weight {cfg.lm.lm_weight}, word_score {cfg.lm.word_score}.")
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
