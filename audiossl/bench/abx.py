"""ABX phone discriminability (libri-light / ZeroSpeech 2021) of frozen features, via ``zrc_abx2``.

The score itself is computed by the ZeroSpeech team's maintained implementation (``zerospeech-libriabx2``:
frame-wise angular distance, DTW-averaged, within-context triplets, within- and across-speaker). What we
add is what it needs from us:

* an **item file** built from the corpus's own ``.align`` lines: every phone other than silence, with its
  previous and next phone as context and the utterance's speaker (libri-light convention: onset and
  offset of the centre phone; silence may be a context but never an item);
* the **features**, one ``.npy`` per utterance, and a time shift that puts each frame where its receptive
  field is centred: ``zrc_abx2`` assumes frame ``i`` is centred at ``(i + 0.5) * frame_step``, ours is
  centred at ``(i * stride + receptive_field / 2) / sample_rate``, so item times move by the difference.

Error rates are fractions (0.05 = 5 %), like every other rate here.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiossl.audio.espeak import SILENCE
from audiossl.data.manifest import parse_alignment
from audiossl.features.frozen import FrozenSplit

SILENCES = frozenset({SILENCE, "SP", "SPN", "<SIL>", "sil", "sp"})
ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"


@dataclass(frozen=True)
class AbxItem:
    """One phone in context: a row of a libri-light ``.item`` file."""

    file: str
    onset: float
    offset: float
    phone: str
    previous: str
    following: str
    speaker: str

    def line(self, shift: float = 0.0) -> str:
        return (f"{self.file} {self.onset - shift:.4f} {self.offset - shift:.4f} {self.phone} {self.previous} "
                f"{self.following} {self.speaker}")


@dataclass(frozen=True)
class AbxScore:
    """Within- and across-speaker ABX error (fractions), within-context condition."""

    within: float
    across: float


def file_key(utterance_id: str) -> str:
    """The item-file name of an utterance: its path without directories and extension."""
    return Path(utterance_id).name.split(".")[0]


def phone_items(ids: Sequence[str], alignments: Sequence[str], speakers: Sequence[str]) -> list[AbxItem]:
    """Every non-silence phone with a neighbour on each side, from ``.align`` lines."""
    items = []
    for utt, line, speaker in zip(ids, alignments, speakers):
        segments = parse_alignment(line, utt)
        for before, (phone, start, end), after in zip(segments, segments[1:], segments[2:]):
            if phone not in SILENCES:
                items.append(AbxItem(file_key(utt), start, end, phone, before[0], after[0], speaker.strip()))
    return items


def write_items(items: Sequence[AbxItem], path: Path, shift: float = 0.0) -> Path:
    path.write_text("\n".join([ITEM_HEADER] + [item.line(shift) for item in items]) + "\n")
    return path


def abx_error(split: FrozenSplit, layer: int, items: Sequence[AbxItem], *, max_size_group: int = 10,
              max_x_across: int = 5, seed: int = 3459) -> AbxScore:
    """ABX error of ``split``'s layer ``layer`` on ``items`` (within context; within and across speaker).

    ``max_size_group`` / ``max_x_across`` are libri-light's sub-sampling of large groups (its defaults).
    """
    from zrc_abx2.eval_ABX import EvalABX, EvalArgs

    grid = split.grid
    step = grid.stride / grid.sample_rate
    shift = (grid.first_centre - grid.stride / 2) / grid.sample_rate  # our centres minus zrc_abx2's
    with tempfile.TemporaryDirectory(prefix="audiossl-abx-") as work:
        features = Path(work) / "features"
        features.mkdir()
        for index, utt in enumerate(split.ids):
            np.save(features / f"{file_key(utt)}.npy", split.utterance(layer, index).float().numpy())
        item_file = write_items(items, Path(work) / "phones.item", shift)
        args = EvalArgs(path_data=str(features), path_item_file=str(item_file), file_extension=".npy",
                        feature_size=step, speaker_mode="all", context_mode="within", distance_mode="cosine",
                        max_size_group=max_size_group, max_x_across=max_x_across, seed=seed)
        with contextlib.redirect_stdout(io.StringIO()):
            scores = {row["abx-s-condition"]: float(row["score"]) for row in EvalABX().eval_abx(args)}
    return AbxScore(within=scores["within"], across=scores["across"])
