"""WER/CER/PER/accuracy against hand-counted examples, breakdowns and aligned worst utterances."""

from __future__ import annotations

import math

import pytest

from audiossl.metrics import (
    accuracy,
    align,
    by_group,
    frame_accuracy,
    normalize_text,
    phone_error_rate,
    wer_cer,
    worst_utterances,
)


def test_normalization_uppercases_strips_punctuation_keeps_apostrophes():
    assert normalize_text("  Don’t stop,  me -- now!  ") == "DON'T STOP ME NOW"
    assert normalize_text("hello_world.") == "HELLO WORLD"


def test_one_substitution_in_four_words_is_25_percent():
    scores = wer_cer(["the cat sat down"], ["the bat sat down"])
    assert scores["wer"] == pytest.approx(0.25)
    assert (scores["substitutions"], scores["deletions"], scores["insertions"]) == (1, 0, 0)
    assert scores["ref_words"] == 4
    # 16 characters including the 3 spaces; one of them (c -> b) is wrong
    assert scores["ref_chars"] == 16
    assert scores["cer"] == pytest.approx(1 / 16)


def test_wer_is_pooled_over_utterances_and_counts_each_error_kind():
    refs = ["A B C D", "E F"]
    hyps = ["A C D", "E F G H"]  # one deletion (B); two insertions (G H)
    scores = wer_cer(refs, hyps)
    assert (scores["substitutions"], scores["deletions"], scores["insertions"]) == (0, 1, 2)
    assert scores["wer"] == pytest.approx(3 / 6)  # pooled, not the mean of 1/4 and 2/2
    assert scores["hyp_words"] == 7
    assert scores["utterances"] == 2


def test_punctuation_and_case_do_not_count_as_errors():
    assert wer_cer(["Hello, world!"], ["HELLO WORLD"])["wer"] == 0.0


def test_empty_hypothesis_is_all_deletions_and_empty_set_is_nan():
    scores = wer_cer(["A B"], [""])
    assert scores["deletions"] == 2 and scores["wer"] == 1.0
    assert math.isnan(wer_cer([], [])["wer"])
    with pytest.raises(ValueError, match="pair one to one"):
        wer_cer(["A"], ["A", "B"])


def test_phone_error_rate_over_phone_tokens():
    refs = ["HH AH0 L OW1", "W ER1 L D"]
    hyps = ["hh ah0 ow1", "W ER1 L D T"]  # one deletion (L), one insertion (T)
    scores = phone_error_rate(refs, hyps)
    assert scores["per"] == pytest.approx(2 / 8)
    assert (scores["deletions"], scores["insertions"], scores["ref_phones"]) == (1, 1, 8)


def test_accuracy_and_frame_accuracy():
    assert accuracy(["s1", "s2", "s3", "s1"], ["s1", "s2", "s1", "s2"]) == {"accuracy": 0.5, "correct": 2, "total": 4}
    scores = frame_accuracy(["AH AH K T", "S S"], ["AH K K T", "S S"])
    assert (scores["accuracy"], scores["correct"], scores["total"]) == (5 / 6, 5, 6)
    with pytest.raises(ValueError, match="pair 0"):
        frame_accuracy(["AH K"], ["AH"])


def test_by_group_scores_each_speaker_separately():
    groups = ["spk2", "spk1", "spk2"]
    refs = ["A B C D", "E F", "G H"]
    hyps = ["A B C D", "E X", "G"]
    result = by_group(groups, refs, hyps)
    assert list(result) == ["spk1", "spk2"]
    assert result["spk1"]["wer"] == pytest.approx(1 / 2)
    assert result["spk2"]["wer"] == pytest.approx(1 / 6)
    assert result["spk2"]["utterances"] == 2
    per = by_group(groups, ["K AH T", "S", "T"], ["K T", "S", "T"], metric=phone_error_rate)
    assert per["spk2"]["per"] == pytest.approx(1 / 4)


def test_alignment_lines_mark_substitution_deletion_insertion():
    # insertion, deletion and substitution far apart, so the minimal alignment is unique
    ref_line, hyp_line, marks, errors = align("the cat sat on the mat today", "oh the cat sat the mat yesterday")
    assert ref_line == "*  THE CAT SAT ON THE MAT TODAY"
    assert hyp_line == "OH THE CAT SAT *  THE MAT YESTERDAY"
    assert marks == "I              D          S"
    assert errors == 3


def test_worst_utterances_ranked_by_errors_and_aligned():
    ids = ["u1", "u2", "u3", "u4"]
    refs = ["A B C", "A B C D", "HELLO WORLD", "X"]
    hyps = ["A B C", "A X", "HELLO THERE WORLD", ""]
    worst = worst_utterances(ids, refs, hyps, n=3)
    assert [u.id for u in worst] == ["u2", "u4", "u3"]  # 3 errors; then 1 error at 100 %; then 1 at 50 %
    assert worst[0].reference == "A B C D"
    assert worst[0].hypothesis == "A X * *"
    assert worst[0].marks == "  S D D"
    assert worst[2].lines() == "REF: HELLO *     WORLD\nHYP: HELLO THERE WORLD\n           I"
    assert all(u.id != "u1" for u in worst_utterances(ids, refs, hyps, n=10))  # perfect ones are not listed


def test_cluster_quality_matches_a_hand_computation() -> None:
    from audiossl.metrics import cluster_quality

    quality = cluster_quality([0, 0, 1, 1], [0, 0, 0, 1])
    assert quality["phone_purity"] == pytest.approx(0.75) and quality["cluster_purity"] == pytest.approx(0.75)
    mutual = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert quality["pnmi"] == pytest.approx(mutual / math.log(2))
    assert cluster_quality([0, 1, 2], [5, 6, 7])["pnmi"] == pytest.approx(1.0)  # clusters = phones
    assert cluster_quality([0, 1, 0, 1], [3, 3, 3, 3])["pnmi"] == pytest.approx(0.0)  # one cluster tells nothing
