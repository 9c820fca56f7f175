"""Few-label ASR on frozen features: a CTC head on the 10-minute split's letters, greedy and n-gram LM.

The head (linear in the quick profile, SUPERB's 2-layer BiLSTM in the full one) reads a learned weighted
sum of the frozen layers and trains until the dev CER stops improving. Dev (and test) are then decoded
greedily and with a word n-gram built from the training transcripts; WER and CER from ``metrics``.
"""

from __future__ import annotations

from pathlib import Path

from audiossl.bench.config import BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow, mean_and_std
from audiossl import metrics
from audiossl.bench.ctc_probe import CTCProbeConfig, fit_ctc_probe, predict_split
from audiossl.asr.decode import BeamSettings, GreedyDecoder, LMBeamDecoder, write_lexicon
from audiossl.features.frozen import FrozenSplit
from audiossl.asr.lm import arpa_vocabulary, manifest_arpa
from audiossl.asr.vocab import Vocabulary

LM_SETTINGS = BeamSettings(beam_size=50, beam_threshold=25.0, lm_weight=2.0, word_score=1.0)


def training_split(features: UpstreamFeatures, cfg: BenchConfig) -> FrozenSplit:
    """The few-label split; taken out of the (already extracted) larger split when it is a subset of it."""
    subset = [line.split("\t")[0] for line in (Path(cfg.manifest_dir) / f"{cfg.asr_split}.tsv").read_text().splitlines()[1:]]
    larger = features.split(cfg.train_split)
    position = {utt: index for index, utt in enumerate(larger.ids)}
    if all(utt in position for utt in subset):
        return larger.select([position[utt] for utt in subset])
    return features.split(cfg.asr_split)


def lm_decoder(cfg: BenchConfig, vocab: Vocabulary) -> LMBeamDecoder:
    arpa = manifest_arpa(cfg.manifest_dir, cfg.lm_text_split, cfg.lm_order, Path(cfg.out_dir) / "lm")
    lexicon = write_lexicon(arpa_vocabulary(arpa), arpa.with_suffix(".lexicon"))
    return LMBeamDecoder(vocab, arpa, lexicon, LM_SETTINGS)


def run(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> BenchRow:
    profile = cfg.settings
    train, dev = training_split(features, cfg), features.split(cfg.dev_split)
    evaluated = {"dev": dev, **{name: features.split(name) for name in profile.test_splits}}
    vocab = Vocabulary.from_dict_file(Path(cfg.manifest_dir) / "dict.ltr.txt")
    targets = [vocab.encode(line, utt) for line, utt in zip(train.labels["ltr"], train.ids)]
    greedy, with_lm = GreedyDecoder(vocab), lm_decoder(cfg, vocab)

    def dev_error(hypotheses: list[str]) -> float:
        return float(metrics.wer_cer(dev.labels["wrd"], hypotheses)["cer"])

    results: dict[str, list[float]] = {}
    curves, details = {}, {}
    for seed in profile.seeds:
        probe_cfg = CTCProbeConfig(head=profile.asr_head, lr=1e-2 if profile.asr_head == "linear" else 2e-3,
                                   max_epochs=profile.ctc_max_epochs * 3, patience=profile.ctc_patience * 2,
                                   seed=seed)
        fitted = fit_ctc_probe(train, targets, dev, dev_error, greedy, len(vocab), probe_cfg)
        for name, split in evaluated.items():
            for decoder_name, decoder in (("greedy", greedy), ("lm", with_lm)):
                scored = metrics.wer_cer(split.labels["wrd"], predict_split(fitted.probe, split, decoder,
                                                                            probe_cfg.batch_frames))
                for metric in ("wer", "cer"):
                    results.setdefault(f"{name}_{decoder_name}_{metric}", []).append(float(scored[metric]))
        curves[f"seed {seed}"] = vars(fitted.curve)
        details[f"seed {seed}"] = {"best_epoch": fitted.best_epoch, "layer_weights": fitted.probe.mix.layer_weights()}
    scores = {}
    for key, values in results.items():
        scores[key], scores[f"{key}_std"] = mean_and_std(values)
    details |= {"seeds": profile.seeds, "head": profile.asr_head, "train_utterances": len(train.ids),
                "lm": f"{cfg.lm_order}-gram of {cfg.lm_text_split}", "lm_weight": LM_SETTINGS.lm_weight,
                "word_score": LM_SETTINGS.word_score}
    return BenchRow(features.name, "asr", scores, {}, curves, details)
