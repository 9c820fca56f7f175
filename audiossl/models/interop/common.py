"""What every peer format shares: the imported model, key renaming, safe file reading, config checks.

Each peer (HuggingFace, fairseq, torchaudio, fairseq2) stores the same wav2vec 2.0 network under its own
parameter names. A converter is therefore a ``KeyMap`` (prefix pairs between our names and theirs) plus a
config translation that refuses, naming the key, anything ``EncoderConfig`` cannot represent exactly.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from audiossl.models.encoder import Encoder, EncoderConfig, build_encoder

OPTIONAL_KEYS = ("mask_embedding",)
"""Encoder parameters a peer may lack (torchaudio keeps no mask embedding): they keep their fresh init."""


class InteropError(ValueError):
    """A peer checkpoint cannot be represented or read; the message names the file and the key."""


@dataclass
class CTCHead:
    """A peer's CTC output layer over its own token order.

    ``tokens`` lists the output symbols by index, or is None when the peer keeps its vocabulary outside the
    checkpoint (fairseq and fairseq2 fine-tuning: a ``dict.ltr.txt``); then ``dictionary_prefix`` names the
    special symbols the peer put before the dictionary's own symbols. ``blank`` is the CTC blank's index and
    ``word_delimiter`` the token that separates words.
    """

    weight: Tensor
    bias: Tensor
    tokens: list[str] | None
    blank: int = 0
    word_delimiter: str = "|"
    dictionary_prefix: tuple[str, ...] = ()
    dropout: float = 0.0


@dataclass
class PretrainingHead:
    """wav2vec 2.0's quantiser and the two projections of its contrastive task, in our layout.

    ``codebook`` is ``(codebooks, entries, dim / codebooks)``; ``entry_proj_*`` maps normalised conv
    features to codebook logits; ``target_proj_*`` (peers: ``project_q``) and ``final_proj_*`` (peers:
    ``project_hid`` / ``final_proj``) map quantised targets and context outputs into the compared space.
    """

    codebook: Tensor
    entry_proj_weight: Tensor
    entry_proj_bias: Tensor
    target_proj_weight: Tensor
    target_proj_bias: Tensor
    final_proj_weight: Tensor
    final_proj_bias: Tensor
    logit_temperature: float = 0.1
    num_negatives: int = 100

    def objective_config(self) -> dict[str, Any]:
        """The fields of ``audiossl.objectives.wav2vec2.Wav2Vec2Config`` this head fixes."""
        groups, entries, part = self.codebook.shape
        return {"num_codebooks": groups, "codebook_entries": entries, "codevector_dim": groups * part,
                "final_dim": self.final_proj_weight.shape[0], "logit_temperature": self.logit_temperature,
                "num_negatives": self.num_negatives}

    def objective_state(self) -> dict[str, Tensor]:
        """The head's tensors under the ``Wav2Vec2`` objective's parameter names (its encoder excluded)."""
        return {"quantizer.codebook": self.codebook, "quantizer.entry_proj.weight": self.entry_proj_weight,
                "quantizer.entry_proj.bias": self.entry_proj_bias,
                "target_projection.weight": self.target_proj_weight,
                "target_projection.bias": self.target_proj_bias,
                "final_projection.weight": self.final_proj_weight, "final_projection.bias": self.final_proj_bias}


@dataclass
class PeerModel:
    """An imported peer checkpoint: our encoder with its weights, plus whatever heads came with it.

    ``source`` is the checkpoint's path (the file actually read, or the directory); ``kind`` the peer.
    """

    source: str
    kind: str
    encoder: Encoder
    ctc_head: CTCHead | None = None
    pretraining: PretrainingHead | None = None
    notes: list[str] = field(default_factory=list)


class KeyMap:
    """Prefix pairs ``(ours, theirs)`` between our encoder's parameter names and a peer's.

    ``{i}`` in a prefix stands for a layer number. The first pair whose prefix matches wins, so a peer's
    legacy spelling can follow its current one: both import, and export writes the current one.
    """

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = [(self._compile(ours), ours, self._compile(theirs), theirs) for ours, theirs in pairs]

    @staticmethod
    def _compile(prefix: str) -> re.Pattern[str]:
        return re.compile("^" + re.escape(prefix).replace(r"\{i\}", r"(\d+)"))

    def _rename(self, key: str, to_ours: bool) -> str | None:
        for ours_re, ours, theirs_re, theirs in self.pairs:
            source, target = (theirs_re, ours) if to_ours else (ours_re, theirs)
            match = source.match(key)
            if match:
                head = target.replace("{i}", match.group(1)) if match.groups() else target
                return head + key[match.end():]
        return None

    def to_ours(self, state: Mapping[str, Tensor], where: str) -> dict[str, Tensor]:
        """Rename a peer's encoder weights; a key no pair covers is an error naming it."""
        renamed = {}
        for key, value in state.items():
            ours = self._rename(key, to_ours=True)
            if ours is None:
                raise InteropError(f"{where}: unexpected parameter {key!r}: not part of a wav2vec 2.0 encoder "
                                   "that audiossl can represent")
            renamed[ours] = value
        return renamed

    def to_theirs(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        renamed = {}
        for key, value in state.items():
            theirs = self._rename(key, to_ours=False)
            if theirs is None:
                raise InteropError(f"encoder parameter {key!r} has no counterpart in the peer format")
            renamed[theirs] = value
        return renamed


def transformer_layer_pairs(layers: str, attention: str, out_proj: str, attn_norm: str, ffn_in: str,
                            ffn_out: str, ffn_norm: str) -> list[tuple[str, str]]:
    """Key pairs of one Transformer layer: every peer names the same seven parts differently."""
    ours = "context.layers.{i}."
    theirs = f"{layers}.{{i}}."
    return [(f"{ours}self_attn.q_proj.", f"{theirs}{attention}.q_proj."),
            (f"{ours}self_attn.k_proj.", f"{theirs}{attention}.k_proj."),
            (f"{ours}self_attn.v_proj.", f"{theirs}{attention}.v_proj."),
            (f"{ours}self_attn.output_proj.", f"{theirs}{attention}.{out_proj}."),
            (f"{ours}self_attn_layer_norm.", f"{theirs}{attn_norm}."),
            (f"{ours}ffn.inner_proj.", f"{theirs}{ffn_in}."),
            (f"{ours}ffn.output_proj.", f"{theirs}{ffn_out}."),
            (f"{ours}ffn_layer_norm.", f"{theirs}{ffn_norm}.")]


def split_prefix(state: Mapping[str, Tensor], prefix: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(entries under prefix with it stripped, the other entries)``."""
    inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    outside = {k: v for k, v in state.items() if not k.startswith(prefix)}
    return inside, outside


def pop_prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Remove and return the entries under ``prefix`` (stripped)."""
    taken = {k[len(prefix):]: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}
    return taken


def require(value: Any, expected: Any, key: str, where: str, why: str = "") -> None:
    """Stop with the key when a peer setting differs from what our encoder computes."""
    if value != expected:
        reason = f" ({why})" if why else ""
        raise InteropError(f"{where}: {key}={value!r} cannot be represented: audiossl needs {expected!r}{reason}")


def get_key(config: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in config:
        raise InteropError(f"{where}: the config has no {key!r}")
    return config[key]


def build_loaded_encoder(config: EncoderConfig, state: dict[str, Tensor], where: str) -> Encoder:
    """Our encoder for ``config`` with ``state`` loaded; missing or surplus weights are errors naming them.

    A missing ``feature_projection`` with equal conv and model widths is an identity (fairseq and fairseq2
    skip the layer then), so it is filled in as one rather than reported.
    """
    encoder = build_encoder(config)
    state = dict(state)
    if "feature_projection.weight" not in state and encoder.feature_encoder.output_dim == config.model_dim:
        state["feature_projection.weight"] = torch.eye(config.model_dim)
        state["feature_projection.bias"] = torch.zeros(config.model_dim)
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in state and k not in OPTIONAL_KEYS]
    surplus = [k for k in state if k not in expected]
    if missing or surplus:
        raise InteropError(f"{where}: weights do not fit the encoder the config describes; "
                           f"missing {missing[:6]}, unexpected {surplus[:6]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise InteropError(f"{where}: {key} has shape {tuple(value.shape)}, the config implies "
                               f"{tuple(expected[key].shape)}")
    encoder.load_state_dict({**expected, **{k: v.float() for k, v in state.items()}})
    return encoder.eval()


def exportable(config: EncoderConfig) -> None:
    """Only encoders every peer can run: a non-causal Transformer over the wav2vec 2.0-style conv stack."""
    if config.context != "transformer":
        raise InteropError(f"only Transformer encoders with the wav2vec 2.0 conv stack can be exported; "
                           f"encoder.context is {config.context!r}")
    if config.causal:
        raise InteropError("encoder.causal=true cannot be exported: the peers' Transformers see both directions")
    if config.conv_norm not in ("group_norm_first", "layer_norm"):
        raise InteropError(f"encoder.conv_norm={config.conv_norm!r} cannot be exported: peers know "
                           "group_norm_first ('group') and layer_norm ('layer') only")
    if config.conv_activation != "gelu":
        raise InteropError(f"encoder.conv_activation={config.conv_activation!r} cannot be exported: the peers "
                           "use GELU in the conv stack")


def plain(value: Any) -> Any:
    """Nested plain containers from omegaconf nodes or argparse namespaces (how fairseq stores configs)."""
    if isinstance(value, argparse.Namespace):
        return plain(vars(value))
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return plain(OmegaConf.to_container(value, resolve=False))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _safe_globals() -> list[Any]:
    """The classes a fairseq checkpoint pickles besides tensors: omegaconf configs or an argparse namespace."""
    import collections
    import typing

    from omegaconf import DictConfig, ListConfig, nodes
    from omegaconf.base import ContainerMetadata, Metadata

    node_types = [getattr(nodes, name) for name in ("AnyNode", "StringNode", "IntegerNode", "FloatNode",
                                                    "BooleanNode", "EnumNode", "ValueNode")
                  if hasattr(nodes, name)]
    return [DictConfig, ListConfig, ContainerMetadata, Metadata, *node_types, argparse.Namespace, typing.Any,
            dict, list, collections.defaultdict, int, float, str, bool]


def read_torch_file(path: str | Path, trusted: bool = False) -> Any:
    """``torch.load`` on CPU that runs no code: tensors, plain containers and config objects only.

    ``trusted=True`` unpickles anything (only for files from a source you trust, e.g. a fairseq checkpoint
    holding classes of a fairseq version this allow-list does not know).
    """
    try:
        if trusted:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError) as error:
        raise InteropError(f"cannot read {path}: {error}") from None
    except Exception as error:  # the unpickler's refusal is a plain Exception subclass of several kinds
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        reason = f"it pickles {found.group(1)}" if found else str(error).splitlines()[0]
        raise InteropError(f"cannot read {path} safely ({reason}); if you trust the file, load it in Python "
                           "with trusted=True") from None
