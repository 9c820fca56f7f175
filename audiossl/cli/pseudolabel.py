"""``audiossl-pseudolabel``: transcribe unlabeled audio with a fine-tuned CTC run and write a self-training split.

    audiossl-pseudolabel run=runs/few_label/train_10min/pretrained_s1 unlabeled=train_clean \\
        exclude=[train_1h] lm.text_split=train_1h out_split=train_10min_st_s1
    audiossl-finetune +recipe=few_label_asr init=runs/pretrain/hubert_tiny data.train_split=train_10min_st_s1 ...

The run's own training split (``labeled``) keeps its real labels; every other utterance of ``unlabeled`` (less
the ``exclude`` splits: here the hour whose transcripts are the LM's only text) gets the
LM beam's transcript, decoded with the LM weight and word score tuned on dev like ``audiossl-evaluate``. The
LM must not hold the unlabeled audio's text: an ``lm.text_split`` that shares audio with ``unlabeled`` is an
error. When ``unlabeled`` has transcripts (a simulation, as here), the pseudo-labels' WER / CER is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.cli.evaluate import EvaluateConfig, LMConfig, LoadedRun, lm_decoder, lm_text_split, load_run, tune_lm
from audiossl.config import ConfigError, to_config
from audiossl.data.manifest import Manifest, label_path, write_manifest
from audiossl.data.pipeline import AudioPipeline
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.pseudo_label import transcribe_batches, unlabeled_pool, write_self_training_split
from audiossl.metrics import wer_cer
from audiossl.progress import progress_bar
from audiossl.training.distributed import resolve_device


@dataclass
class PseudoLabelConfig:
    """``conf/pseudolabel.yaml``; every split lives in ``manifest_dir`` (null: the run's own manifests)."""

    run: str | None = None  # the fine-tuned letter CTC run (dir or .pt) that transcribes
    unlabeled: str | None = None  # the split to transcribe
    out_split: str | None = None  # the self-training split written next to the others
    labeled: str | None = None  # real labels kept in out_split; null: the run's training split
    exclude: list[str] = field(default_factory=list)  # splits whose audio is left out of the unlabeled pool
    manifest_dir: str | None = None  # LM text and dev tuning always come from the run's own manifests
    out_dir: str = "reports/pseudolabel"  # the LM files and summary.json
    max_batch_samples: int = 960_000
    device: str = "auto"
    lm: LMConfig = field(default_factory=lambda: LMConfig(beam_size=200))

    def validate(self) -> PseudoLabelConfig:
        for key in ("run", "unlabeled", "out_split"):
            if not getattr(self, key):
                raise ConfigError(f"invalid config at '{key}': required (see audiossl-pseudolabel's docstring)")
        return self


def pseudo_label(cfg: PseudoLabelConfig) -> dict[str, Any]:
    """Write ``out_split`` and return the summary (also written to ``out_dir/summary.json``)."""
    cfg.validate()
    evaluate_cfg = EvaluateConfig(checkpoint=cfg.run, out_dir=cfg.out_dir, lm=cfg.lm, device=cfg.device,
                                  max_batch_samples=cfg.max_batch_samples)
    run = load_run(Path(str(cfg.run)).name, str(cfg.run))
    if not (isinstance(run.task, CTCTask) and run.task.vocab.is_letters):
        raise ConfigError(f"invalid config at 'run': {cfg.run} is not a letter CTC (ASR) run")
    manifest_dir = Path(cfg.manifest_dir or run.saved.data.manifest_dir)
    labeled = _manifest(manifest_dir, cfg.labeled or run.saved.data.train_split, "labeled", labels=["ltr"])
    pool = _pool(cfg, manifest_dir, labeled)
    _refuse_leaking_lm(cfg, run, pool)
    device = resolve_device(cfg.device)
    run.task.to(device)
    settings = cfg.lm.settings()
    if cfg.lm.tune_split:
        tuning = tune_lm(run, evaluate_cfg)
        settings = replace(settings, lm_weight=tuning.best.lm_weight, word_score=tuning.best.word_score)
    pool_dir = Path(cfg.out_dir) / "unlabeled"  # the pool as a manifest: the pipeline reads splits by name
    write_manifest(pool_dir, str(cfg.unlabeled), pool.root, pool.rows, {})
    data = replace(run.saved.data, manifest_dir=str(pool_dir),
                   max_batch_samples=max(run.saved.data.max_batch_samples, cfg.max_batch_samples))
    pipeline = AudioPipeline(data.for_evaluation([]), str(cfg.unlabeled), train=False)
    batches = progress_bar(pipeline, total=len(pipeline), desc=f"pseudo-labels {cfg.unlabeled}", unit="batch")
    hypotheses = transcribe_batches(run.task, batches, lm_decoder(run, evaluate_cfg, settings), device)
    written = write_self_training_split(manifest_dir, str(cfg.out_split), labeled, pool, hypotheses)
    summary = {"out_split": str(written.tsv), "labeled": written.labeled, "excluded": cfg.exclude,
               "unlabeled_pool": len(pool.rows), "pseudo_labeled": written.pseudo_labeled,
               "left_out": written.left_out, "unreadable": len(pool.rows) - len(hypotheses),
               "lm": {key: getattr(settings, key) for key in ("beam_size", "lm_weight", "word_score")},
               "lm_text": cfg.lm.arpa or cfg.lm.text or cfg.lm.text_split}
    if "wrd" in pool.labels:  # a simulation: the pool's transcripts score the pseudo-labels, nothing else
        pairs = [(ref, hypotheses[row.relpath]) for row, ref in zip(pool.rows, pool.labels["wrd"])
                 if row.relpath in hypotheses]
        summary["pseudo_label_error"] = wer_cer([r for r, _ in pairs], [h for _, h in pairs])
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _pool(cfg: PseudoLabelConfig, manifest_dir: Path, labeled: Manifest) -> Manifest:
    """``unlabeled`` less the labeled and ``exclude`` splits' audio."""
    excluded = [_manifest(manifest_dir, split, "exclude") for split in cfg.exclude]
    has_text = label_path(manifest_dir / f"{cfg.unlabeled}.tsv", "wrd").is_file()
    unlabeled = _manifest(manifest_dir, str(cfg.unlabeled), "unlabeled", ["wrd"] if has_text else [])
    return unlabeled_pool(unlabeled, [labeled, *excluded])


def _manifest(manifest_dir: Path, split: str, key: str, labels: list[str] | None = None) -> Manifest:
    """``split`` of ``manifest_dir`` with ``labels``; a missing file is a config error naming ``key``."""
    tsv = manifest_dir / f"{split}.tsv"
    if not tsv.is_file():
        raise ConfigError(f"invalid config at '{key}': no {tsv}")
    for kind in labels or []:
        if not label_path(tsv, kind).is_file():
            raise ConfigError(f"invalid config at '{key}': {split} has no .{kind} labels next to {tsv}")
    return Manifest.load(tsv, labels=labels or [])


def _refuse_leaking_lm(cfg: PseudoLabelConfig, run: LoadedRun, pool: Manifest) -> None:
    """An n-gram built from transcripts of the very audio it decodes makes pseudo-labels unrealistically good.

    The split checked is the one ``audiossl-evaluate`` builds the n-gram from (``lm_text_split``: in the run's own
    manifests), compared by audio file, so a pool listed in other manifests is checked too."""
    if cfg.lm.arpa or cfg.lm.text:
        return  # an outside LM: its text is the user's responsibility
    split = lm_text_split(run, cfg.lm)
    lm_tsv = Path(run.saved.data.manifest_dir) / f"{split}.tsv"
    if not lm_tsv.is_file():
        return  # no audio listed for that text: nothing to compare (evaluate reports a missing .wrd itself)
    shared = unlabeled_pool(pool, [Manifest.load(lm_tsv)])
    if len(shared.rows) < len(pool.rows):
        raise ConfigError(f"invalid config at 'lm.text_split': {split} transcribes {len(pool.rows) - len(shared.rows)} "
                          f"utterances of {cfg.unlabeled}, so its LM would know their text; name a split whose "
                          "audio is not in the unlabeled pool (e.g. the 1 h labels' text, with exclude=[train_1h]), "
                          "lm.text or lm.arpa")


@hydra_app("pseudolabel")
def main(node: Any) -> None:
    summary = pseudo_label(to_config(PseudoLabelConfig, node, "pseudolabel"))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
