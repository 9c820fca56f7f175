"""Inference speed against the peers at BASE size: feature extraction and transcription, same weights, same audio.

One randomly initialised wav2vec 2.0 BASE encoder (conf/encoder/w2v2_base.yaml) with a letter CTC head is
exported with our own exporters to HuggingFace (``Wav2Vec2Model`` / ``Wav2Vec2ForCTC``) and torchaudio
(``wav2vec2_model``); the outputs are checked equal before anything is timed. Random weights cost what trained
ones cost. Every file of a manifest (default: the embedded corpus's test_clean) is then processed one at a time,
the peers alternated file by file so machine load hits them alike:

- extraction: every layer's hidden states of one file, batch 1 (what ``audiossl-extract`` computes), for ours,
  HF ``Wav2Vec2Model(output_hidden_states=True)`` and torchaudio ``extract_features``; audio already in memory;
- transcription: file path -> text with word times: ``audiossl-transcribe``'s ``transcribe_file`` (read, encode,
  greedy CTC, word alignment) against HF's ``pipeline("automatic-speech-recognition", return_timestamps="word")``
  on the same file read with soundfile (its feature extractor, model, argmax and word offsets).

Reported: the real-time factor (wall / audio seconds; below 1 is faster than real time) and each peer's time
over ours. Run it on a quiet machine: ``uptime`` is printed beside the numbers.

    .venv/bin/python benchmarks/bench_inference.py --threads 2 --files 40
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import soundfile  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from audiossl.audio.io import AudioPolicy  # noqa: E402
from audiossl.asr.decode import GreedyDecoder  # noqa: E402
from audiossl.asr.vocab import Vocabulary  # noqa: E402
from audiossl.config import to_config  # noqa: E402
from audiossl.data.manifest import read_tsv  # noqa: E402
from audiossl.downstream.base import TaskConfig  # noqa: E402
from audiossl.downstream.ctc import CTCTask  # noqa: E402
from audiossl.downstream.peer_ctc import ctc_head_of  # noqa: E402
from audiossl.downstream.transcribe import Chunking, transcribe_file  # noqa: E402
from audiossl.features.upstream import EncoderUpstream, UpstreamSpec  # noqa: E402
from audiossl.models.encoder import EncoderConfig, build_encoder  # noqa: E402
from audiossl.models.interop.hf import export_hf  # noqa: E402
from audiossl.models.interop.torchaudio import export_torchaudio  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LETTERS = ["|", *"ETAOINSHRDLUCMFWYPVBGKQJXZ'"]


def base_task() -> CTCTask:
    """BASE encoder + letter CTC head, random weights (seeded), eval mode."""
    torch.manual_seed(0)
    config = to_config(EncoderConfig, OmegaConf.load(ROOT / "conf" / "encoder" / "w2v2_base.yaml"), "encoder")
    encoder = build_encoder(config)
    return CTCTask(TaskConfig(), EncoderUpstream(encoder, UpstreamSpec("encoder", "random")),
                   Vocabulary.from_symbols(LETTERS)).eval()


def peers(task: CTCTask, out_dir: Path) -> dict[str, torch.nn.Module]:
    from torchaudio.models import wav2vec2_model
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Model

    head = ctc_head_of(task)
    export_hf(task.encoder.base_encoder, out_dir / "bare")
    export_hf(task.encoder.base_encoder, out_dir / "ctc", head)
    contents = export_torchaudio(task.encoder.base_encoder, head)
    torchaudio_model = wav2vec2_model(**contents["config"])
    torchaudio_model.load_state_dict(contents["state_dict"])
    return {"hf": Wav2Vec2Model.from_pretrained(out_dir / "bare").eval(),
            "hf_ctc": Wav2Vec2ForCTC.from_pretrained(out_dir / "ctc").eval(),
            "torchaudio": torchaudio_model.eval()}


def check_same_outputs(task: CTCTask, models: dict[str, torch.nn.Module], wave: torch.Tensor) -> dict[str, float]:
    """Largest absolute difference of the last layer (HF, torchaudio) and of the CTC logits (HF) against ours."""
    with torch.inference_mode():
        ours = task.encoder(wave[None], torch.tensor([len(wave)]))
        last = ours.features[0]
        hf_last = models["hf"](wave[None]).last_hidden_state[0]
        ta_last = models["torchaudio"].extract_features(wave[None])[0][-1][0]
        logits = task.head(ours.features, ours.lengths)[0]
        hf_logits = models["hf_ctc"](wave[None]).logits[0]
    return {"hf_last_layer": float((hf_last - last).abs().max()), "torchaudio_last_layer": float((ta_last - last).abs().max()),
            "hf_ctc_logits": float((hf_logits - logits).abs().max())}


def extraction_runners(task: CTCTask, models: dict[str, torch.nn.Module]) -> dict[str, object]:
    def ours(wave: torch.Tensor) -> int:
        return len(task.encoder(wave[None], torch.tensor([len(wave)])).hidden_states)

    def hf(wave: torch.Tensor) -> int:
        return len(models["hf"](wave[None], output_hidden_states=True).hidden_states)

    def torchaudio(wave: torch.Tensor) -> int:
        return len(models["torchaudio"].extract_features(wave[None])[0])

    return {"ours": ours, "hf": hf, "torchaudio": torchaudio}


def transcription_runners(task: CTCTask, ctc_dir: Path) -> dict[str, object]:
    from transformers import pipeline

    recognizer = pipeline("automatic-speech-recognition", model=str(ctc_dir), device="cpu")
    decoder, policy = GreedyDecoder(task.vocab), AudioPolicy(16_000)

    def ours(path: Path) -> str:
        return transcribe_file(task, decoder, path, policy, chunking=Chunking()).text

    def hf(path: Path) -> str:
        audio, rate = soundfile.read(path, dtype="float32")
        return recognizer({"raw": audio, "sampling_rate": rate}, return_timestamps="word")["text"]

    return {"ours": ours, "hf": hf}


def timed_alternating(runners: dict[str, object], items: list, seconds: list[float]) -> dict[str, float]:
    """Wall seconds per runner over all items, runners alternated per item (first item: warm-up, not counted)."""
    totals = {name: 0.0 for name in runners}
    with torch.inference_mode():
        for index, item in enumerate(items):
            for name, run in runners.items():
                start = time.perf_counter()
                run(item)
                if index > 0:
                    totals[name] += time.perf_counter() - start
    audio = sum(seconds[1:])
    return {name: total / audio for name, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default=str(ROOT / "manifests" / "synth" / "test_clean.tsv"))
    parser.add_argument("--files", type=int, default=40, help="first N files of the manifest (first one warms up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench_inference"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root, rows = read_tsv(Path(args.manifest))
    paths = [root / row.relpath for row in rows[: args.files]]
    waves = [torch.from_numpy(soundfile.read(p, dtype="float32")[0]) for p in paths]
    seconds = [len(w) / 16_000 for w in waves]
    out = Path(args.out)
    task = base_task()
    models = peers(task, out / "exported")
    result = {"threads": args.threads, "files": len(paths) - 1, "audio_seconds": round(sum(seconds[1:]), 1),
              "load_average_before": os.getloadavg(), "max_abs_difference": check_same_outputs(task, models, waves[0])}
    result["extraction_rtf"] = timed_alternating(extraction_runners(task, models), waves, seconds)
    result["transcription_rtf"] = timed_alternating(transcription_runners(task, out / "exported" / "ctc"), paths, seconds)
    result["load_average_after"] = os.getloadavg()
    for kind in ("extraction_rtf", "transcription_rtf"):
        ours = result[kind]["ours"]
        print(f"{kind}: " + ", ".join(f"{name} {rtf:.4f} ({rtf / ours:.2f}x ours)" for name, rtf in result[kind].items()))
    print(f"max abs differences: {result['max_abs_difference']}; load average {result['load_average_before']} -> "
          f"{result['load_average_after']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
