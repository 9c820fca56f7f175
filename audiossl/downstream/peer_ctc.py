"""Peer CTC models as our ``CTCTask`` and back: the vocabulary mapping and the head's output order.

Our vocabularies put the CTC blank at index 0 and the symbols after it (``vocab.py``). HF's ``vocab.json``
usually does the same with ``<pad>`` as blank (``config.pad_token_id``), followed by ``<s> </s> <unk>`` and
the letters with ``|`` as word delimiter; fairseq and fairseq2 use their ``Dictionary``: ``<s> <pad> </s>
<unk>`` and then the ``dict.ltr.txt`` symbols, with ``<s>`` (index 0) as blank. Importing moves the peer's
blank row of the output layer to index 0 and keeps every other output in order, special symbols included,
so our log-probabilities equal the peer's exactly. Exporting writes our blank as ``<pad>``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from audiossl.data.pipeline import DataConfig
from audiossl.downstream.heads import LastLayer, LinearHead
from audiossl.downstream.base import DownstreamTask, TaskConfig
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.finetuned import SAVED_KEY, SavedTask, TaskOutputs, finetuned_from, is_finetuned
from audiossl.features.upstream import EncoderUpstream, UpstreamSpec, encoder_of, resolve_checkpoint, split_branch
from audiossl.asr.vocab import WORD_SEPARATOR, Vocabulary, VocabularyError, read_dict_file
from audiossl.models.interop import CTCHead, InteropError, PeerModel, load_peer, open_checkpoint
from audiossl.models.interop.hf import export_hf
from audiossl.models.interop.torchaudio import export_torchaudio

DICT_FILE = "dict.ltr.txt"
EXPORT_FORMATS = ("hf", "torchaudio")
BLANK_NAME = "<pad>"
"""What our blank is called in an exported HF vocabulary (HF's CTC blank is its pad token)."""


def peer_tokens(head: CTCHead, dict_path: str | Path | None, where: Path) -> list[str]:
    """The head's output symbols by index; a fairseq-style head takes them from ``dict_path`` (default:
    ``dict.ltr.txt`` next to the checkpoint, where fairseq's data directory usually puts it)."""
    if head.tokens is not None:
        return head.tokens
    if not head.dictionary_prefix:
        raise InteropError(f"{where}: the CTC head comes without its vocabulary (an HF model needs vocab.json)")
    default = (where if where.is_dir() else where.parent) / DICT_FILE
    path = Path(dict_path) if dict_path else default
    if not path.is_file():
        raise InteropError(f"{where}: the CTC head's vocabulary is a fairseq dictionary; give its {DICT_FILE} "
                           f"(dict_path=...) or put it next to the checkpoint ({default} does not exist)")
    try:
        tokens = [*head.dictionary_prefix, *read_dict_file(path)]
    except VocabularyError as error:
        raise InteropError(str(error)) from None
    if len(tokens) != head.weight.shape[0]:
        raise InteropError(f"{path}: {len(tokens) - len(head.dictionary_prefix)} symbols plus "
                           f"{list(head.dictionary_prefix)} make {len(tokens)} outputs, the CTC head has "
                           f"{head.weight.shape[0]}: wrong dictionary for this checkpoint")
    return tokens


def peer_vocabulary(head: CTCHead, tokens: list[str]) -> tuple[Vocabulary, list[int]]:
    """Our vocabulary for a peer head and the row order (blank first) that maps its outputs onto it."""
    if len(tokens) != head.weight.shape[0]:
        raise InteropError(f"the vocabulary has {len(tokens)} tokens, the CTC head {head.weight.shape[0]} outputs")
    order = [head.blank, *(i for i in range(len(tokens)) if i != head.blank)]
    symbols = [tokens[i] for i in order[1:]]
    if head.word_delimiter != WORD_SEPARATOR:
        if WORD_SEPARATOR in symbols:
            raise InteropError(f"the vocabulary uses {head.word_delimiter!r} as word delimiter and also has "
                               f"{WORD_SEPARATOR!r}: cannot map it onto ours")
        symbols = [WORD_SEPARATOR if s == head.word_delimiter else s for s in symbols]
    try:
        return Vocabulary(symbols, blank=tokens[head.blank]), order
    except VocabularyError as error:
        raise InteropError(f"the CTC vocabulary cannot be used: {error}") from None


def peer_ctc_task(peer: PeerModel, dict_path: str | Path | None = None) -> tuple[CTCTask, dict[str, Any]]:
    """A ``CTCTask`` computing exactly the peer's CTC log-probabilities, and a run config describing it
    (the shape of a fine-tuning checkpoint's, so evaluation and transcription treat both alike)."""
    head = peer.ctc_head
    if head is None:
        raise InteropError(f"{peer.source} has no CTC head: fine-tune it first (audiossl-finetune init=...)")
    where = Path(peer.source)
    vocab, order = peer_vocabulary(head, peer_tokens(head, dict_path, where))
    cfg = TaskConfig(name="asr" if vocab.is_letters else "phoneme", mode="finetune", head="linear",
                     dropout=head.dropout)
    spec = UpstreamSpec("encoder", peer.source, asdict(peer.encoder.config))
    task = CTCTask(cfg, EncoderUpstream(peer.encoder, spec), vocab)
    with torch.no_grad():
        task.head.proj.weight.copy_(head.weight[order])
        task.head.proj.bias.copy_(head.bias[order])
    saved = SavedTask(spec, TaskOutputs(vocab.symbols[1:]), DataConfig(crop=False, min_sample_size=0))
    config = {"task": asdict(cfg), "encoder": spec.encoder, SAVED_KEY: saved.to_dict()}
    return task.eval(), config


def load_any_finetuned(path: str | Path, dict_path: str | Path | None = None
                       ) -> tuple[DownstreamTask, dict[str, Any], Path]:
    """``load_finetuned`` for our fine-tuning runs, and peer CTC checkpoints (HF ``*ForCTC`` directory,
    fine-tuned fairseq ``.pt``, fairseq2 ASR checkpoint, our torchaudio file with ``aux``) as well."""
    checkpoint = resolve_checkpoint(path)
    opened = open_checkpoint(checkpoint)
    if opened.kind == "audiossl":
        task, config = finetuned_from(opened.contents, checkpoint)
        return task, config, checkpoint
    task, config = peer_ctc_task(load_peer(opened), dict_path)
    return task, config, checkpoint


def ctc_head_of(task: DownstreamTask) -> CTCHead:
    """Our CTC head in peer form: only a linear layer over the last layer is what peers compute."""
    if not isinstance(task, CTCTask):
        raise InteropError(f"only CTC tasks (asr, phoneme) export with their head; this is {type(task).__name__}")
    if not isinstance(task.reader, LastLayer) or not isinstance(task.head, LinearHead):
        raise InteropError(f"task.mode={task.cfg.mode!r} with task.head={task.cfg.head!r} cannot be exported: "
                           "peers' CTC heads are one linear layer over the last layer (mode finetune or probe, "
                           "head linear)")
    symbols = task.vocab.symbols[1:]
    if BLANK_NAME in symbols:
        raise InteropError(f"the vocabulary has a symbol {BLANK_NAME!r}, the name the blank needs in HF's vocabulary")
    return CTCHead(task.head.proj.weight.detach(), task.head.proj.bias.detach(), [BLANK_NAME, *symbols], blank=0,
                   word_delimiter=WORD_SEPARATOR, dropout=task.cfg.dropout)


def export_model(checkpoint: str | Path, out: str | Path, fmt: str, dict_path: str | Path | None = None) -> Path:
    """Write any checkpoint we can read as an HF directory or a torchaudio file; returns what was written.

    A fine-tuned CTC model (ours or a peer's) goes out with its head and vocabulary, anything else as a
    bare encoder. Peers convert too (e.g. a fairseq checkpoint to an HF directory).
    """
    if fmt not in EXPORT_FORMATS:
        raise InteropError(f"unknown export format {fmt!r}; choose one of {list(EXPORT_FORMATS)}")
    encoder, ctc = _encoder_and_head(resolve_checkpoint(checkpoint), dict_path, split_branch(checkpoint)[1])
    if encoder.config.feature_encoder != "conv":
        raise InteropError(f"{checkpoint}: its encoder reads {encoder.config.feature_encoder} frames; HF and "
                           "torchaudio wav2vec 2.0 models have a conv feature encoder over the waveform")
    out = Path(out)
    if fmt == "hf":
        return export_hf(encoder, out, ctc)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(export_torchaudio(encoder, ctc), out)
    return out


def _encoder_and_head(checkpoint: Path, dict_path: str | Path | None,
                      branch: str = "encoder") -> tuple[Any, CTCHead | None]:
    opened = open_checkpoint(checkpoint)
    if opened.kind == "audiossl":
        if not is_finetuned(opened.contents["config"]):
            return encoder_of(opened, branch), None
        task = finetuned_from(opened.contents, checkpoint)[0]
    else:
        peer = load_peer(opened)
        if peer.ctc_head is None:
            return peer.encoder, None
        task = peer_ctc_task(peer, dict_path)[0]
    if not isinstance(task.encoder, EncoderUpstream):
        raise InteropError(f"{checkpoint}: the upstream is a {task.encoder.spec.kind} front-end, not an encoder")
    return task.encoder.base_encoder, ctc_head_of(task)


__all__ = ["EXPORT_FORMATS", "ctc_head_of", "export_model", "load_any_finetuned", "peer_ctc_task",
           "peer_tokens", "peer_vocabulary"]
