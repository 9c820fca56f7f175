"""write_report: files exist, the JSON holds the numbers computed from the inputs, PNGs are real images."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

from audiossl.metrics import NORMALIZATION
from audiossl.reports import SystemResult, UtteranceResult, load_results, save_results, write_report
from audiossl.reports.plots import read_metrics_jsonl

REFERENCES = [  # (id, speaker, reference, seconds)
    ("s1-0-000", "s1", "THE CAT SAT DOWN", 1.2),
    ("s1-0-001", "s1", "A DOG RAN", 0.8),
    ("s2-0-000", "s2", "THE MAT IS RED", 1.5),
    ("s2-0-001", "s2", "HELLO WORLD", 0.6),
]
HYPOTHESES = {
    # system -> decoder -> hypotheses in REFERENCES order
    "random init": {
        "greedy": ["THE BAT SAT", "A DOG RAN", "MAT IS BED", "HELLO"],  # 1S1D, 0, 1D1S, 1D -> 5/13
        "4-gram LM": ["THE CAT SAT", "A DOG RAN", "THE MAT IS BED", "HELLO WORLD"],  # 1D, 1S -> 2/13
    },
    "wav2vec2 pretrained": {
        "greedy": ["THE BAT SAT DOWN", "A DOG RAN", "THE MAT IS RED", "HELLO WORLD"],  # 1S -> 1/13
        "4-gram LM": ["THE CAT SAT DOWN", "A DOG RAN", "THE MAT IS RED", "HELLO WORLD"],  # 0
    },
}
EXPECTED_WER = {
    ("random init", "greedy"): 5 / 13,
    ("random init", "4-gram LM"): 2 / 13,
    ("wav2vec2 pretrained", "greedy"): 1 / 13,
    ("wav2vec2 pretrained", "4-gram LM"): 0.0,
}


def asr_results() -> list[SystemResult]:
    results = []
    for system, by_decoder in HYPOTHESES.items():
        for decoder, hyps in by_decoder.items():
            utterances = [UtteranceResult(i, s, r, h, sec) for (i, s, r, sec), h in zip(REFERENCES, hyps)]
            results.append(SystemResult(system, "dev", decoder, "asr", utterances))
    return results


def speaker_result() -> SystemResult:
    truth = ["s1", "s1", "s1", "s2", "s2", "s3", "s3", "s3"]
    guess = ["s1", "s1", "s2", "s2", "s2", "s3", "s1", "s3"]  # 6 of 8 right
    utterances = [UtteranceResult(f"u{i}", t, t, g, 1.0) for i, (t, g) in enumerate(zip(truth, guess))]
    return SystemResult("wav2vec2 pretrained", "dev", "linear", "speaker", utterances)


def phoneme_result() -> SystemResult:
    utterances = [
        UtteranceResult("p0", "s1", "K AE1 T", "K AE1 T S", 0.5),  # one insertion
        UtteranceResult("p1", "s2", "D AO1 G", "D G", 0.4),  # one deletion
    ]
    return SystemResult("wav2vec2 pretrained", "dev", "greedy", "phoneme", utterances)  # 1 I + 1 D over 6 -> 2/6


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    curves = out / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 4.0 / (1 + s)}) for s in range(0, 100, 10)]
    lines += [json.dumps({"step": 50, "dev_wer": 0.6}), "not json", json.dumps({"dev_wer": 0.4}), "[1, 2]"]
    curves.write_text("\n".join(lines) + "\n")
    systems = [*asr_results(), speaker_result(), phoneme_result()]
    markdown = write_report(out, systems, "Tiny comparison", learning_curves={"run": curves}, notes=["hand-made inputs"])
    assert markdown == out / "report.md"
    return out


def test_report_json_holds_hand_computed_numbers(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    entries = {(e["system"], e["decoder"], e["task"]): e for e in report["results"]}
    for (system, decoder), wer in EXPECTED_WER.items():
        entry = entries[(system, decoder, "asr")]
        assert entry["metrics"]["wer"] == pytest.approx(wer)
        assert entry["metrics"]["ref_words"] == 13 and entry["metrics"]["utterances"] == 4
    greedy = entries[("random init", "greedy", "asr")]
    assert (greedy["metrics"]["substitutions"], greedy["metrics"]["deletions"]) == (2, 3)
    assert greedy["by_speaker"]["s1"]["wer"] == pytest.approx(2 / 7)
    assert greedy["by_speaker"]["s2"]["wer"] == pytest.approx(3 / 6)
    assert entries[("wav2vec2 pretrained", "linear", "speaker")]["metrics"]["accuracy"] == pytest.approx(6 / 8)
    assert entries[("wav2vec2 pretrained", "greedy", "phoneme")]["metrics"]["per"] == pytest.approx(2 / 6)
    assert sum(m["utterances"] for m in greedy["by_length"].values()) == 4
    assert report["normalization"] == NORMALIZATION and report["notes"] == ["hand-made inputs"]


def test_report_markdown_shows_table_comparisons_and_alignments(report_dir):
    text = (report_dir / "report.md").read_text()
    assert text.startswith("# Tiny comparison")
    assert text.index("## Headline") < text.index("## Comparisons") < text.index("## Worst utterances")
    assert "| random init | 38.46 (" in text  # 5/13 WER as a percentage in the headline table
    assert "**0.00 (0.00)**" in text  # best system per column in bold
    assert "greedy 38.46 → 4-gram LM 15.38 WER (-60.0 % relative)" in text
    assert "- dev · greedy: **wav2vec2 pretrained** 7.69 beats random init 38.46 WER" in text
    assert "REF: THE CAT SAT DOWN" in text and "HYP: THE BAT SAT *" in text
    assert "75.00" in text and "33.33" in text  # speaker accuracy and PER
    assert NORMALIZATION in text


def test_comparison_bullets_bold_the_better_system_whichever_is_listed_first(tmp_path):
    """The first-listed system is the reference of every comparison; when it is the better one, it is the one
    in bold (a report once bolded whichever system was compared, even the worse)."""
    better_first = [r for r in asr_results() if r.decoder == "greedy"][::-1]
    text = write_report(tmp_path, better_first, "order").read_text()
    assert "- dev · greedy: **wav2vec2 pretrained** 7.69 beats random init 38.46 WER" in text
    assert "**random init**" not in text


def test_report_plots_are_linked_and_are_real_images(report_dir):
    text = (report_dir / "report.md").read_text()
    report = json.loads((report_dir / "report.json").read_text())
    plots = report["plots"]
    files = [plots["learning_curves"], plots["per_speaker"]["asr"], plots["error_by_length"]["asr"]]
    files += list(plots["confusion"].values())
    assert len(files) == 4 and all(files)
    for name in files:
        assert f"]({name})" in text
        image = matplotlib.image.imread(report_dir / name)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image.std() > 0.01  # not a blank canvas


def test_metrics_jsonl_reader_tolerates_bad_lines(report_dir):
    records = read_metrics_jsonl(report_dir)
    assert len(records) == 12  # 10 loss lines and 2 dev lines; the bad ones are skipped
    assert records[-1] == {"dev_wer": 0.4, "step": 50.0}  # a line without step inherits the previous one


def test_results_round_trip_and_bad_task(tmp_path):
    results = [*asr_results(), speaker_result()]
    loaded = load_results(save_results(tmp_path / "results.json", results))
    assert loaded == results
    with pytest.raises(ValueError, match="task 'asrr'"):
        SystemResult("x", "dev", "greedy", "asrr", [])


def test_learning_curves_read_the_trainers_nested_validation_metrics(tmp_path):
    """``metrics.jsonl`` as the Trainer writes it: dev metrics nest under ``metrics`` in ``valid`` records."""
    lines = [json.dumps({"step": 10, "split": "train", "loss": 2.0, "metrics": {"acc": 0.1}}),
             json.dumps({"step": 10, "split": "valid", "metrics": {"cer": 0.7, "wer": 1.0}})]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    records = read_metrics_jsonl(tmp_path)
    assert records[0] == {"step": 10.0, "loss": 2.0}
    assert records[1] == {"step": 10.0, "dev_cer": 0.7, "dev_wer": 1.0}


def test_seeded_runs_are_summarised_as_mean_and_spread(tmp_path):
    """Runs named ``<system> seed <n>`` become one row: mean ± sample sd of WER (and CER) over the seeds."""
    seeded = []
    for seed, (system, by_decoder) in zip((1, 2), HYPOTHESES.items()):
        utterances = [UtteranceResult(i, s, r, h, sec) for (i, s, r, sec), h in zip(REFERENCES, by_decoder["greedy"])]
        seeded.append(SystemResult(f"recipe seed {seed}", "dev", "greedy", "asr", utterances))
    text = write_report(tmp_path, seeded, "seeds").read_text()
    report = json.loads((tmp_path / "report.json").read_text())
    (row,) = report["over_seeds"]
    assert (row["system"], row["seeds"]) == ("recipe", 2)
    assert row["headline"]["mean"] == pytest.approx((5 / 13 + 1 / 13) / 2)
    assert row["headline"]["std"] == pytest.approx(abs(5 / 13 - 1 / 13) / 2 ** 0.5)
    assert "## Over seeds" in text and "| recipe | 2 | 23.1 ± 21.8 (" in text
