"""Pretraining throughput: seconds of audio per second of fwd + bwd + AdamW step, per objective (tiny presets).

Each objective is built as its CPU preset builds it (``PRESETS``: conf/experiment/<objective>_tiny.yaml, and for
wav2vec 2.0 the paper objective of wav2vec2_paper_tiny, the work the peers do), on one fixed
batch (16 x 2 s by default, so the presets' batch sizes differ from this); ``--encoder w2v2_base`` measures
BASE instead.

For wav2vec 2.0 the same figure is taken for two peers at an equal config (conv stack, dims, layers, heads,
codebooks, share of frames masked, span, distractors, dropouts): HuggingFace ``Wav2Vec2ForPreTraining`` and
fairseq2's ``Wav2Vec2Model`` (its own model and loss). All run in one process, alternated step by step so
machine load hits them alike; "ours is Nx faster" is the number to watch. Each step includes its own mask and
negative sampling. What still differs: HF quantizes and scores every frame, not only the masked ones (more
work, counted in its FLOPs); masks are drawn by each side's own sampler (same expected share).

Each side also gets its matrix FLOPs per second of audio (torch's FlopCounterMode: matmuls, convolutions,
attention; forward + backward) and the share of this machine's attainable peak its step reaches, the peak
being a large matrix product timed in the same run at the same threads and precision. Every side updates with
the trainer's AdamW (``build_optimizer``: fused where PyTorch has the kernel). ``--profile`` prints the top ops
per input shape and where the step goes by kind of op (matrix products, convolutions, attention, norms, the update).

    .venv/bin/python benchmarks/bench_pretrain.py                     # all objectives + HF, 2 threads
    .venv/bin/python benchmarks/bench_pretrain.py --objectives wav2vec2 --profile
    .venv/bin/python benchmarks/bench_pretrain.py --objectives wav2vec2 --encoder w2v2_base --batch 2 --seconds 4 \
        --threads 2 --bf16                                           # BASE, both sides under CPU bf16 autocast
    .venv/bin/python benchmarks/bench_pretrain.py --objectives wav2vec2 --encoder w2v2_base --batch 8 --seconds 15 \
        --device cuda --bf16                                         # on a GPU: also peak memory (benchmarks/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from audiossl.config import to_config  # noqa: E402
from audiossl.data.batch import AudioBatch  # noqa: E402
from audiossl.models.encoder import EncoderConfig, build_encoder  # noqa: E402
from audiossl.objectives.base import objective_spec  # noqa: E402
from audiossl.training.loop import cpu_has_bf16_units  # noqa: E402
from audiossl.training.optim import OptimConfig, build_optimizer  # noqa: E402
from wav2vec2_peers import build_fairseq2, build_hf, compose_preset, fairseq2_loss, hf_loss  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
OBJECTIVES = ["cpc", "apc", "cola", "wav2vec2", "hubert"]
# The preset each objective is timed with: wav2vec 2.0's is the paper's objective, the work HF and fairseq2 do.
PRESETS = {name: f"{name}_tiny" for name in OBJECTIVES} | {"wav2vec2": "wav2vec2_paper_tiny"}


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
    # HuBERT's targets: 100 cluster ids per 10 ms frame (the finest grid of our conv stacks), one line per item
    clusters = torch.randint(0, 100, (size, waves.shape[1] // 160), generator=generator)
    labels = {"spk": [str(i % 4) for i in range(size)], "km": [" ".join(map(str, row.tolist())) for row in clusters]}
    return AudioBatch(waves, torch.full((size,), waves.shape[1]), [str(i) for i in range(size)], labels)


def build_objective(name: str, encoder: str | None = None) -> torch.nn.Module:
    """The objective as its tiny preset builds it (``PRESETS``, composed as ``audiossl-pretrain`` composes it);
    with ``encoder``, that encoder preset under the objective's defaults."""
    if encoder is None:
        setup = compose_preset([], PRESETS[name])
        return setup.spec.build(setup.objective, build_encoder(setup.encoder))
    spec = objective_spec(name)
    config = to_config(spec.config_cls, OmegaConf.load(CONF / "objective" / f"{name}.yaml"), "objective")
    encoder_node = OmegaConf.load(CONF / "encoder" / f"{encoder}.yaml")
    return spec.build(config, build_encoder(to_config(EncoderConfig, encoder_node, "encoder")))


def trainer_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The trainer's AdamW (fused where PyTorch has the kernel) for every side: the update is part of a step."""
    return build_optimizer([{"params": model.parameters()}], OptimConfig(lr=1e-4))


def ours_step(objective: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: AudioBatch) -> float:
    output = objective(batch)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    optimizer.step()
    return float(output.loss.detach())


def peer_step(peer_loss, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: AudioBatch) -> float:
    """One step of a peer through its own loss (``wav2vec2_peers.hf_loss`` / ``fairseq2_loss``)."""
    loss, _ = peer_loss(model, batch.waveforms)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, model: torch.nn.Module, *args, bf16: bool = False) -> float:
    """Wall seconds of one step on the model's device (a GPU is synchronised before and after)."""
    device = next(model.parameters()).device
    synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        step(model, *args)
    synchronize(device)
    return time.perf_counter() - start


def runners_for(name: str, objective: torch.nn.Module, with_peers: bool) -> dict[str, tuple[Any, torch.nn.Module]]:
    """Ours, and for wav2vec 2.0 the peers at the same shape: HF ``Wav2Vec2ForPreTraining`` and fairseq2."""
    runners: dict[str, tuple[Any, torch.nn.Module]] = {"ours": (ours_step, objective)}
    if with_peers and name == "wav2vec2":
        encoder, config = objective.encoder.config, objective.config
        runners["hf"] = (partial(peer_step, hf_loss), build_hf(encoder, config))
        # fairseq2 weighs its loss terms as our objective does
        runners["fairseq2"] = (partial(peer_step, partial(fairseq2_loss, objective=config)),
                               build_fairseq2(encoder, config))
    return runners


def step_flops(run, model: torch.nn.Module, batch: AudioBatch, bf16: bool) -> float:
    """Matrix FLOPs (matmul, conv, attention) of one forward + backward, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # counts the same graph; changes no weight
    counter = FlopCounterMode(display=False)
    with counter:
        timed(run, model, optimizer, batch, bf16=bf16)
    return float(counter.get_total_flops())


def gemm_peak(bf16: bool, device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large square matrix product at the current thread count: the attainable peak of this
    machine for the step's dominant work (theoretical peaks overstate what one core sustains). On a GPU the
    matrix is 8192 wide, so the product is long enough to reach its tensor cores' rate.

    The fastest of ``repeats`` products, each timed alone: on a shared VM the rate of back-to-back products
    moves by a third within a second (84-123 GFLOP/s on one 2-core EPYC), and a mean over such a spell let a
    step appear to run above the "peak"."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    size = 8192 if device.type == "cuda" else size
    a, b = torch.randn(size, size, dtype=dtype, device=device), torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    fastest = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * size**3 / fastest


def bench(name: str, batch: AudioBatch, steps: int, warmup: int, with_peers: bool, encoder: str | None = None,
          bf16: bool = False, device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    torch.manual_seed(0)
    objective = build_objective(name, encoder).train()
    runners = {key: (run, model.to(device)) for key, (run, model) in runners_for(name, objective, with_peers).items()}
    batch = batch.to(device)
    optimizers = {key: trainer_optimizer(model) for key, (_, model) in runners.items()}
    seconds = {key: 0.0 for key in runners}
    peak_memory = {key: 0.0 for key in runners}
    for step in range(warmup + steps):
        for key, (run, model) in runners.items():  # alternate, so load spikes hit all alike
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            elapsed = timed(run, model, optimizers[key], batch, bf16=bf16)
            seconds[key] += elapsed if step >= warmup else 0.0
            if device.type == "cuda":
                peak_memory[key] = max(peak_memory[key], torch.cuda.max_memory_allocated(device) / 2**30)
    peak = gemm_peak(bf16, device)
    result: dict[str, Any] = {"gemm_peak_gflops": peak / 1e9, "device": str(device)}
    for key, (run, model) in runners.items():
        step_s = seconds[key] / steps
        flops = step_flops(run, model, batch, bf16)
        result[key] = {"step_s": step_s, "audio_s_per_s": batch.seconds / step_s,
                       "params": sum(p.numel() for p in model.parameters()),
                       "gflop_per_audio_s": flops / batch.seconds / 1e9, "share_of_peak": flops / step_s / peak,
                       "peak_memory_gib": peak_memory[key]}
        if key != "ours":
            result[f"ours_over_{key}"] = seconds[key] / seconds["ours"]
    return result


OP_KINDS: dict[str, tuple[str, ...]] = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "convolutions": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
                     "aten::_slow_conv2d", "aten::thnn_conv"),
    "attention kernels and softmax": ("aten::_scaled_dot_product", "aten::_softmax", "aten::_log_softmax"),
    "normalisation": ("aten::native_layer_norm", "aten::native_group_norm"),
    "optimizer update": ("aten::_fused_adamw", "aten::_foreach_"),
}
"""Op name prefixes of each kind in the profile's summary; everything else is ``OTHER_OPS``."""
OTHER_OPS = "elementwise, copies, the rest"


def where_the_step_goes(prof: Any) -> str:
    """Self CPU time per kind of op (``OP_KINDS``), in ms and as a share of the profiled step."""
    totals: dict[str, float] = dict.fromkeys([*OP_KINDS, OTHER_OPS], 0.0)
    for event in prof.key_averages():
        kind = next((kind for kind, prefixes in OP_KINDS.items() if event.key.startswith(prefixes)), OTHER_OPS)
        totals[kind] += event.self_cpu_time_total / 1e3
    whole = sum(totals.values())
    return "\n".join(f"  {kind:32s} {ms:9.1f} ms  {100 * ms / whole:5.1f} %" for kind, ms in totals.items())


def profile(name: str, batch: AudioBatch, with_peers: bool, encoder: str | None = None) -> None:
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    objective = build_objective(name, encoder).train()
    for label, (run, model) in runners_for(name, objective, with_peers).items():
        optimizer = trainer_optimizer(model)
        run(model, optimizer, batch)
        with torch_profile(record_shapes=True) as prof:
            run(model, optimizer, batch)
        print(f"\n== {name} / {label} ==")  # per op and input shape: which layer, not only which kind of op
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=15,
                                                                 max_shapes_column_width=70))
        print(f"where the step goes (self CPU time by kind of op):\n{where_the_step_goes(prof)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", default=OBJECTIVES, choices=OBJECTIVES)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: on a shared 2-core box 2 threads oversubscribe)")
    parser.add_argument("--encoder", help="encoder preset (conf/encoder) instead of each objective's tiny one")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, on every side")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-hf", action="store_true", help="skip the peers (HuggingFace, fairseq2)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = speech_like_batch(args.batch, args.seconds)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} thread(s)"
    print(f"batch {args.batch} x {args.seconds:g} s, {where}, {'bf16' if args.bf16 else 'float32'}, "
          f"torch {torch.__version__}, "
          f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if args.bf16 and device.type == "cpu" and not cpu_has_bf16_units():
        print(f"note: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 matrix units; bf16 is "
              "emulated, so its peak and steps are far slower than float32 here")
    if args.profile:
        for name in args.objectives:
            profile(name, batch, not args.no_hf, args.encoder)
        return
    results = {}
    for name in args.objectives:
        results[name] = row = bench(name, batch, args.steps, args.warmup, not args.no_hf, args.encoder, args.bf16,
                                    device)
        print(f"{name} / {args.encoder or PRESETS[name]} (matrix peak measured: {row['gemm_peak_gflops']:.0f} GFLOP/s)")
        for key in [key for key in row if isinstance(row[key], dict)]:
            side = row[key]
            ratio = f"  ours is {row[f'ours_over_{key}']:.2f}x faster" if key != "ours" else ""
            print(f"  {key:9s} {side['params'] / 1e6:6.2f}M params {side['step_s']:7.3f} s/step "
                  f"{side['audio_s_per_s']:7.1f} audio-s/s {side['gflop_per_audio_s']:7.2f} GFLOP/audio-s "
                  f"{100 * side['share_of_peak']:5.1f}% of peak"
                  + (f" {side['peak_memory_gib']:5.1f} GiB peak" if device.type == "cuda" else "") + ratio, flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
