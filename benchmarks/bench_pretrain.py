"""Pretraining throughput: seconds of audio per second of fwd + bwd + AdamW step, per objective (tiny presets).

For wav2vec 2.0 the same figure is taken for HuggingFace ``transformers``' ``Wav2Vec2ForPreTraining`` at an
equal config (conv stack, dims, layers, heads, codebooks, mask prob/span, negatives, dropouts), run in the
same process and alternated step by step with ours so machine load hits both alike; the ratio ours / HF is
the number to watch (> 1 means we are faster). HF's step includes its numpy mask and negative sampling,
as ours includes the masker and sampler.

    .venv/bin/python benchmarks/bench_pretrain.py                     # all objectives + HF, 2 threads
    .venv/bin/python benchmarks/bench_pretrain.py --objectives wav2vec2 --profile
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from audiossl.config import to_config  # noqa: E402
from audiossl.data.batch import AudioBatch  # noqa: E402
from audiossl.models.encoder import EncoderConfig, build_encoder  # noqa: E402
from audiossl.objectives.base import objective_spec  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = {"cpc": "cpc_gru_tiny", "apc": "apc_gru_tiny", "cola": "w2v2_tiny", "wav2vec2": "w2v2_tiny"}


def speech_like_batch(size: int, seconds: float, sample_rate: int = 16_000) -> AudioBatch:
    """Harmonic sweeps with syllable-rate amplitude modulation and noise: cost does not depend on content,
    but finite, non-degenerate statistics keep every loss path (e.g. -inf distractors) realistic."""
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 100 + 150 * torch.rand(size, 1, generator=generator)
    phase = 2 * math.pi * torch.cumsum(f0 * (1 + 0.5 * t / seconds), dim=1) / sample_rate
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t + torch.rand(size, 1, generator=generator) * 6)
    waves = 0.2 * envelope * sum(torch.sin(h * phase) / h for h in range(1, 6))
    waves = waves + 0.01 * torch.randn(waves.shape, generator=generator)
    return AudioBatch(waves, torch.full((size,), waves.shape[1]), [str(i) for i in range(size)],
                      {"spk": [str(i % 4) for i in range(size)]})


def build_objective(name: str) -> torch.nn.Module:
    encoder_cfg = to_config(EncoderConfig, OmegaConf.load(CONF / "encoder" / f"{PRESETS[name]}.yaml"), "encoder")
    spec = objective_spec(name)
    config = to_config(spec.config_cls, OmegaConf.load(CONF / "objective" / f"{name}.yaml"), "objective")
    return spec.build(config, build_encoder(encoder_cfg))


def ours_step(objective: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: AudioBatch) -> float:
    output = objective(batch)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    optimizer.step()
    return float(output.loss.detach())


def build_hf(objective: torch.nn.Module) -> torch.nn.Module:
    """``Wav2Vec2ForPreTraining`` with the same shape and regularisation as our wav2vec2 objective."""
    from transformers import Wav2Vec2Config as HFConfig
    from transformers import Wav2Vec2ForPreTraining

    enc, obj = objective.encoder.config, objective.config
    config = HFConfig(
        hidden_size=enc.model_dim, num_hidden_layers=enc.num_layers, num_attention_heads=enc.num_heads,
        intermediate_size=enc.ffn_dim, hidden_dropout=enc.dropout, attention_dropout=enc.attention_dropout,
        activation_dropout=enc.activation_dropout, feat_proj_dropout=enc.feature_dropout,
        feat_quantizer_dropout=obj.target_dropout, layerdrop=enc.layerdrop,
        feat_extract_norm="layer" if enc.conv_norm == "layer_norm" else "group",
        conv_dim=[c for c, _, _ in enc.conv_layers], conv_kernel=[k for _, k, _ in enc.conv_layers],
        conv_stride=[s for _, _, s in enc.conv_layers], conv_bias=enc.conv_bias,
        num_conv_pos_embeddings=enc.pos_conv_kernel, num_conv_pos_embedding_groups=enc.pos_conv_groups,
        do_stable_layer_norm=enc.norm_first, mask_time_prob=obj.mask_prob * obj.mask_span,
        mask_time_length=obj.mask_span, mask_time_min_masks=obj.min_mask_spans,
        num_codevectors_per_group=obj.codebook_entries, num_codevector_groups=obj.num_codebooks,
        codevector_dim=obj.codevector_dim, proj_codevector_dim=obj.final_dim, num_negatives=obj.num_negatives,
        contrastive_logits_temperature=obj.logit_temperature, diversity_loss_weight=obj.diversity_weight)
    return Wav2Vec2ForPreTraining(config).train()


def hf_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: AudioBatch) -> float:
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    config = model.config
    frames = int(model._get_feat_extract_output_lengths(batch.waveforms.shape[1]))
    shape = (batch.size, frames)
    mask = _compute_mask_indices(shape, config.mask_time_prob, config.mask_time_length,
                                 min_masks=config.mask_time_min_masks)
    negatives = _sample_negative_indices(shape, config.num_negatives, mask_time_indices=mask)
    output = model(batch.waveforms, mask_time_indices=torch.from_numpy(mask),
                   sampled_negative_indices=torch.from_numpy(negatives))
    loss = output.loss / int(mask.sum())  # HF sums over masked frames; we average (same gradient direction)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def timed(step, *args) -> float:
    start = time.perf_counter()
    step(*args)
    return time.perf_counter() - start


def bench(name: str, batch: AudioBatch, steps: int, warmup: int, with_hf: bool) -> dict[str, float]:
    torch.manual_seed(0)
    objective = build_objective(name).train()
    runners = {"ours": (ours_step, objective)}
    if with_hf and name == "wav2vec2":
        runners["hf"] = (hf_step, build_hf(objective))
    optimizers = {key: torch.optim.AdamW(model.parameters(), lr=1e-4) for key, (_, model) in runners.items()}
    seconds = {key: 0.0 for key in runners}
    for step in range(warmup + steps):
        for key, (run, model) in runners.items():  # alternate, so load spikes hit both
            elapsed = timed(run, model, optimizers[key], batch)
            seconds[key] += elapsed if step >= warmup else 0.0
    result = {f"{key}_audio_s_per_s": batch.seconds * steps / total for key, total in seconds.items()}
    result |= {f"{key}_step_s": total / steps for key, total in seconds.items()}
    result["params"] = sum(p.numel() for p in objective.parameters())
    if "hf" in runners:
        result["ours_over_hf"] = seconds["hf"] / seconds["ours"]
        result["hf_params"] = sum(p.numel() for p in runners["hf"][1].parameters())
    return result


def profile(name: str, batch: AudioBatch, with_hf: bool) -> None:
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    objective = build_objective(name).train()
    targets = [("ours", ours_step, objective)]
    if with_hf and name == "wav2vec2":
        targets.append(("hf", hf_step, build_hf(objective)))
    for label, run, model in targets:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        run(model, optimizer, batch)
        with torch_profile() as prof:
            run(model, optimizer, batch)
        print(f"\n== {name} / {label} ==")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: on a shared 2-core box 2 threads oversubscribe)")
    parser.add_argument("--no-hf", action="store_true", help="skip the HuggingFace comparison")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = speech_like_batch(args.batch, args.seconds)
    print(f"batch {args.batch} x {args.seconds:g} s, {args.threads} thread(s), torch {torch.__version__}, "
          f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if args.profile:
        for name in args.objectives:
            profile(name, batch, not args.no_hf)
        return
    results = {}
    for name in args.objectives:
        results[name] = bench(name, batch, args.steps, args.warmup, not args.no_hf)
        row = results[name]
        line = (f"{name:9s} {PRESETS[name]:13s} {row['params'] / 1e6:5.2f}M params  "
                f"{row['ours_step_s']:6.3f} s/step  {row['ours_audio_s_per_s']:6.1f} audio-s/s")
        if "ours_over_hf" in row:
            line += (f"  | HF {row['hf_step_s']:6.3f} s/step {row['hf_audio_s_per_s']:6.1f} audio-s/s"
                     f"  ours/HF throughput = {row['ours_over_hf']:.2f}x")
        print(line, flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
