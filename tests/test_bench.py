"""``audiossl-bench`` end to end on a tiny tone corpus: every task gives a sane row, rows resume, one report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _tone_corpus import TINY_ENCODER, run_cli, write_tone_corpus
from audiossl.bench import config as bench_config
from audiossl.bench.config import CEILING_NAME, BenchConfig, Profile
from audiossl.bench.runner import run_bench
from audiossl.config import ConfigError
from audiossl.reports.bench import write_bench_report

SPLITS = {"train_1h": 40, "train_10min": 10, "dev_clean": 6, "test_clean": 4}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), SPLITS, dict_split="train_1h")


@pytest.fixture
def small_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick profile with CTC heads cut to a few epochs (the tone corpus needs no more)."""
    monkeypatch.setitem(bench_config.PROFILES, "quick", Profile(ctc_max_epochs=4, ctc_patience=2))


def test_every_task_gives_a_row_and_rows_resume(corpus: Path, tmp_path: Path, small_profile: None,
                                                one_thread_seeded: None) -> None:
    cfg = BenchConfig(upstreams=["mfcc", "fbank"], manifest_dir=str(corpus), out_dir=str(tmp_path / "bench"),
                      lm_text_split="train_1h", lm_order=2, progress=False, num_threads=1)
    lines: list[str] = []
    rows = run_bench(cfg, log=lines.append)
    assert [(r.upstream, r.task) for r in rows] == [(u, t) for u in ("mfcc", "fbank")
                                                   for t in ("phone_frames", "abx", "speaker", "phoneme", "asr")]
    by = {(r.upstream, r.task): r for r in rows}
    phones = by["mfcc", "phone_frames"]
    assert phones.scores["dev_accuracy"] > 0.6  # tones are easy; chance is 1/7
    assert phones.curves["layer 0"]["iterations"] and phones.details["best_layer"] == 0
    abx = by["mfcc", "abx"]
    assert 0 <= abx.scores["dev_clean_within"] < 0.2 and 0 <= abx.scores["dev_clean_across"] < 0.5
    assert by["fbank", "speaker"].scores["test_accuracy"] == 1.0  # two speakers, 10 % pitch apart
    assert 0 <= by["mfcc", "phoneme"].scores["dev_per"] <= 1.5
    assert {"dev_greedy_wer", "dev_lm_wer", "dev_greedy_cer", "dev_lm_cer"} <= set(by["mfcc", "asr"].scores)
    assert all("saved" not in line for line in lines)

    again: list[str] = []
    assert [r.scores for r in run_bench(cfg, log=again.append)] == [r.scores for r in rows]
    assert all("(saved)" in line for line in again)

    report = write_bench_report(cfg.out_dir, rows, "tones", cfg.dev_split)
    text = report.read_text()
    assert "| mfcc |" in text and "ABX across" in text and "Did the probes converge?" in text
    assert (report.parent / "bench_bars.png").is_file() and (report.parent / "probe_curves.png").is_file()
    saved = json.loads((report.parent / "report.json").read_text())
    assert len(saved["rows"]) == 10


def test_a_changed_setting_recomputes_the_row(corpus: Path, tmp_path: Path, small_profile: None,
                                              one_thread_seeded: None) -> None:
    cfg = BenchConfig(upstreams=["mfcc"], tasks=["speaker"], manifest_dir=str(corpus), out_dir=str(tmp_path),
                      progress=False, num_threads=1)
    run_bench(cfg, log=lambda _: None)
    lines: list[str] = []
    cfg.dev_split = "test_clean"
    run_bench(cfg, log=lines.append)
    assert len(lines) == 1 and "(saved)" not in lines[0]


def test_too_few_utterances_per_speaker_is_a_clear_error(corpus: Path, tmp_path: Path, one_thread_seeded: None) -> None:
    cfg = BenchConfig(upstreams=["mfcc"], tasks=["speaker"], manifest_dir=str(corpus), out_dir=str(tmp_path),
                      train_split="train_10min", progress=False, num_threads=1)
    with pytest.raises(ConfigError, match="train_split"):
        run_bench(cfg, log=lambda _: None)


def test_supervised_ceiling_row_and_the_distance_to_it(corpus: Path, tmp_path: Path, one_thread_seeded: None) -> None:
    """conf/recipe/phone_ceiling.yaml trains a random encoder end to end on frame phones; the bench scores it
    as the ceiling row and reports every other row's gap to it."""
    run_dir = tmp_path / "ceiling"
    done = run_cli("finetune", "+recipe=phone_ceiling", f"run_dir={run_dir}", f"data.manifest_dir={corpus}",
                   "data.train_split=train_1h", "trainer.max_steps=60", "trainer.validate_every=60",
                   "trainer.save_every=60", "trainer.num_threads=1", "trainer.progress=false",
                   "data.max_batch_samples=64000", "data.max_sample_size=64000", *TINY_ENCODER)
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = BenchConfig(upstreams=["mfcc", "random"], random_from=str(run_dir), ceiling=str(run_dir),
                      tasks=["phone_frames"], manifest_dir=str(corpus), out_dir=str(tmp_path / "bench"),
                      progress=False, num_threads=1)
    rows = {row.upstream: row.scores["dev_accuracy"] for row in run_bench(cfg, log=lambda _: None)}
    assert list(rows) == ["mfcc", "random", CEILING_NAME]
    assert rows[CEILING_NAME] > 0.97 and rows[CEILING_NAME] > max(rows["mfcc"], rows["random"])
    text = write_bench_report(cfg.out_dir, run_bench(cfg, log=lambda _: None), "tones", cfg.dev_split).read_text()
    gap = text.split("## Distance to the supervised ceiling")[1]
    assert f"| random | {100 * (rows[CEILING_NAME] - rows['random']):+.1f} |" in gap
    with pytest.raises(ConfigError, match="'ceiling'"):
        BenchConfig(upstreams=["mfcc", str(run_dir)], ceiling=str(run_dir)).validate()
