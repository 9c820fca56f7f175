"""The mini-SUPERB harness: frozen upstreams scored on frame phones, ABX, speaker ID, phonemes and ASR.

``runner.run_bench`` drives it; each task is one module (``frame_phones``, ``phone_abx``, ``speaker_id``,
``phoneme_ctc``, ``asr_ctc``) with ``run(features, cfg, done) -> BenchRow``.
"""
