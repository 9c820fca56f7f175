"""The mini-SUPERB harness: frozen upstreams scored on frame phones, ABX, speaker ID, phonemes and ASR,
and on the clip tasks: speaker ID on short crops, accent ID on unseen voices, keyword spotting.

``runner.run_bench`` drives it; each task is one module (``frame_phones``, ``phone_abx``, ``speaker_id``,
``phoneme_ctc``, ``asr_ctc``, ``speaker_crops``, ``accent_id``, ``keywords``) with
``run(features, cfg, done) -> BenchRow``; ``clips`` holds what the clip tasks share.
"""
