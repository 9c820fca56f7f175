"""Where the synthetic corpus build spends its time (run by hand, never by CI).

    .venv/bin/python benchmarks/bench_synth.py            # per-stage throughput, one core
    .venv/bin/python benchmarks/bench_synth.py --build    # plus a full default-size build

Every stage is reported as a real-time factor (seconds of audio per second of one core), so the
numbers say directly how long 2 h of audio costs: 7200 s / RTF.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np
import soundfile as sf

from audiossl.audio import corrupt as C
from audiossl.audio.espeak import SAMPLE_RATE, _engine, _LOCK, VoiceSettings, synthesize
from audiossl.data.synth import SynthConfig, build_corpus
from audiossl.data.synth.grammar import SentenceGrammar, build_vocabulary


def timed(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def stage_rtfs(n_sentences: int = 60) -> dict[str, float]:
    grammar = SentenceGrammar(build_vocabulary(4000))
    rng = np.random.default_rng(0)
    texts = [grammar.sample(rng).text for _ in range(n_sentences)]
    voice = VoiceSettings("en-us", "m3")
    results = [synthesize(t, voice) for t in texts]
    seconds = sum(r.seconds for r in results)
    wave = np.concatenate([r.waveform for r in results])

    def espeak_only() -> None:
        with _LOCK:
            engine = _engine()
            for text in texts:
                engine.synthesize(text, 0)

    def flac() -> None:
        sf.write(io.BytesIO(), wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")

    talkers = [r.waveform for r in results[:4]]
    stages = {
        "espeak synthesis (22.05 kHz, no resampling)": lambda: espeak_only(),
        "synthesize() incl. resampling + alignment": lambda: [synthesize(t, voice) for t in texts],
        "pink noise + add": lambda: C.add_noise(wave, C.pink_noise(len(wave), rng), 10.0),
        "babble mix (talkers given)": lambda: C.mix_talkers(talkers, len(wave)),
        "reverb (rt60 0.5 s)": lambda: C.reverberate(wave, 0.5, rng, SAMPLE_RATE),
        "telephone band-pass": lambda: C.band_limit(wave, SAMPLE_RATE),
        "speed change x1.1": lambda: C.change_speed(wave, 1.1, SAMPLE_RATE),
        "FLAC PCM_16 encode": flac,
    }
    return {name: seconds / timed(fn, 3) for name, fn in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="also time a default-size corpus build")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    for name, rtf in stage_rtfs().items():
        print(f"{name:<46} {rtf:9.0f} x real time  -> 2 h costs {7200 / rtf:6.1f} core-s")
    if args.build:
        with tempfile.TemporaryDirectory() as out:
            summary = build_corpus(SynthConfig(out_dir=out))
            print(summary.table())
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
