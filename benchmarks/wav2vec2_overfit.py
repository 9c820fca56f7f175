"""Can wav2vec 2.0 learn at all on this conv stack? Overfit 16 fixed 2 s crops of the corpus and watch the loss.

A run that cannot leave log(K+1) on 16 clips has a fault that more data or updates will not fix. The same
crops, masking, negatives, codebook, learning rate and temperature schedule run through our objective
(``--peer ours``) or HF ``Wav2Vec2ForPreTraining`` with its own mask, negative sampling and loss (``--peer hf``),
so "our bug" and "the recipe" can be told apart. ``--conv cpc`` builds the 10 ms stack as CPC_audio does
(conv bias + ReLU), ``--conv w2v2`` as wav2vec 2.0 does (no bias, GELU); both with a LayerNorm per block.

    python benchmarks/wav2vec2_overfit.py --peer ours --conv w2v2 --seed 0
    python benchmarks/wav2vec2_overfit.py --peer hf --conv cpc --seed 1
    python benchmarks/wav2vec2_overfit.py --peer ours --conv w2v2 --continuous    # quantize_targets=false
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from audiossl.cli._hydra import CONF_DIR
from audiossl.cli.pretrain import PretrainSetup, validate
from audiossl.data.batch import AudioBatch
from audiossl.models import build_encoder
from wav2vec2_peers import build_hf, hf_loss

CLIPS, SAMPLES = 16, 32_000


def load_crops(manifest: Path) -> torch.Tensor:
    """The first ``CLIPS`` utterances of a fairseq manifest, first 2 s of each."""
    root, *rows = manifest.read_text().splitlines()
    waves = [sf.read(Path(root) / row.split("\t")[0], dtype="float32", frames=SAMPLES)[0] for row in rows[:CLIPS]]
    return torch.from_numpy(np.stack(waves))


def preset(conv: str, continuous: bool) -> PretrainSetup:
    """``wav2vec2_paper_tiny`` as ``audiossl-pretrain`` composes it, with the conv style asked for and dropout off
    (overfitting is the point)."""
    overrides = ["+experiment=wav2vec2_paper_tiny", "encoder.dropout=0.0", "encoder.attention_dropout=0.0",
                 "encoder.feature_dropout=0.0", "objective.target_dropout=0.0",
                 f"encoder.conv_bias={conv == 'cpc'}", f"encoder.conv_activation={'relu' if conv == 'cpc' else 'gelu'}",
                 f"objective.quantize_targets={not continuous}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(compose(config_name="pretrain", overrides=overrides))


def ours(setup: PretrainSetup, waves: torch.Tensor):
    model = setup.spec.build(setup.objective, build_encoder(setup.encoder))
    batch = AudioBatch(waves, torch.full((CLIPS,), SAMPLES), [str(i) for i in range(CLIPS)], {})

    def step(update: int) -> tuple[torch.Tensor, float, float]:
        model.on_update(update)
        output = model(batch)
        return output.loss, output.metrics["contrastive"], output.metrics.get("code_ppl", math.nan)
    return model, step


def hf(setup: PretrainSetup, waves: torch.Tensor):
    model = build_hf(setup.encoder, setup.objective)
    objective = setup.objective

    def step(update: int) -> tuple[torch.Tensor, float, float]:
        model.set_gumbel_temperature(objective.gumbel_temperature(update))
        loss, metrics = hf_loss(model, waves)
        return loss, float(metrics["contrastive"]), float(metrics["code_ppl"])
    return model, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=["ours", "hf"], default="ours")
    parser.add_argument("--conv", choices=["cpc", "w2v2"], default="w2v2")
    parser.add_argument("--continuous", action="store_true", help="quantize_targets=false (ours only)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--manifest", type=Path, default=Path("manifests/synth/train_clean.tsv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # HF draws masks and negatives with numpy
    setup = preset(args.conv, args.continuous)
    model, step = (ours if args.peer == "ours" else hf)(setup, load_crops(args.manifest))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    chance, started = math.log(setup.objective.num_negatives + 1), time.perf_counter()
    for update in range(1, args.steps + 1):
        loss, contrastive, code_ppl = step(update - 1)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if update % 10 == 0:
            print(f"{args.peer} conv={args.conv} seed={args.seed} update {update:4d}: contrastive {contrastive:.3f} "
                  f"(chance {chance:.3f}), code perplexity {code_ppl:.1f}, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
