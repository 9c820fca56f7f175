"""ABX through zrc_abx2: our item files, feature files and frame-time shift give the hand-computed errors."""

from __future__ import annotations

import math

import pytest
import torch

from audiossl.bench.abx import AbxItem, abx_error, phone_items
from audiossl.features.frozen import FrameGrid, FrozenSplit


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_phone_items_take_context_from_neighbours_and_skip_silence() -> None:
    line = "SIL:0.00:0.10 HH:0.10:0.15 AH:0.15:0.25 SIL:0.25:0.30 L:0.30:0.40 OW:0.40:0.50"
    items = phone_items(["dev/1/2/1-2-0003.flac"], [line], ["1 "])
    assert [(i.phone, i.previous, i.following) for i in items] == [("HH", "SIL", "AH"), ("AH", "HH", "SIL"),
                                                                   ("L", "SIL", "OW")]
    assert items[0] == AbxItem("1-2-0003", 0.10, 0.15, "HH", "SIL", "AH", "1")


def test_abx_errors_match_a_hand_computation(tmp_path) -> None:
    """Every item is one frame, so DTW distance = angle / 180 between two 2-d vectors.

    Context P_Q everywhere. Speaker 1: A at 0 and 72.5 degrees, B at 90. Speaker 2: A at 25.8, B at 78.5.
    Within speaker only (A, B) of speaker 1 has triplets: x = 72.5 (a = 0, b = 90) is wrong, x = 0 is right:
    error 1/2. Across speaker the four (A|B, speaker) cells score 1, 1/2, 1/2, 1: error 1/4.
    """
    stride, first_centre = 160, 232.5  # the CPC stack's grid: frame t centred at (160 t + 232.5) / 16 kHz
    frames = {"1-1-0000": [0.0, 90.0, 72.5], "2-1-0000": [25.8, 78.5]}
    phones = {"1-1-0000": ["A", "B", "A"], "2-1-0000": ["A", "B"]}
    items = []
    for utt, angles in frames.items():
        for t, phone in enumerate(phones[utt]):
            centre = (t * stride + first_centre) / 16_000
            # zrc_abx2 keeps frames centred in [onset, offset - 1 frame): this span selects frame t alone,
            # and only if the item times are shifted onto our receptive-field centres
            items.append(AbxItem(utt, centre - 0.004, centre + 0.012, phone, "P", "Q", utt.split("-")[0]))
    layers = [torch.tensor([unit(a) for utt in frames for a in frames[utt]], dtype=torch.float16)]
    split = FrozenSplit(list(frames), torch.tensor([0, 3, 5]), layers, {}, FrameGrid(stride, first_centre, 16_000))
    score = abx_error(split, 0, items)
    assert score.within == pytest.approx(0.5)
    assert score.across == pytest.approx(0.25)
