"""fairseq2 wav2vec 2.0 checkpoints (families ``wav2vec2`` and ``wav2vec2_asr``), import only.

A fairseq2 training run writes ``<checkpoint_dir>/model.yaml`` (family and the unstructured model config)
and ``<checkpoint_dir>/step_N/model/pp_00/tp_00/sdp_00.pt`` (the model's state dict). We accept the
checkpoint directory (its latest step), a step directory, or the ``.pt`` file; in Python,
``from_fairseq2(state_dict, config)`` takes a live ``Wav2Vec2Config`` / ``Wav2Vec2AsrConfig`` as well.

fairseq2 has no feature projection when the conv output already has the model width (we use an identity
then) and names the post-LN LayerNorm ``encoder_frontend.layer_norm``, the pre-LN one ``encoder.layer_norm``.
An ASR model's ``final_proj`` is its CTC head, over fairseq's dictionary layout (as converted fairseq
checkpoints have it): the caller supplies the ``dict.ltr.txt``.
"""

from __future__ import annotations

import dataclasses
import re
from enum import Enum
from pathlib import Path
from typing import Any

from torch import Tensor

from audiossl.models.encoder import EncoderConfig
from audiossl.models.interop.common import (
    CTCHead,
    InteropError,
    KeyMap,
    PeerModel,
    PretrainingHead,
    build_loaded_encoder,
    get_key,
    pop_prefixed,
    read_torch_file,
    require,
    transformer_layer_pairs,
)
from audiossl.models.interop.fairseq import DICTIONARY_PREFIX

KEYS = KeyMap([
    ("feature_encoder.layers.{i}.conv.", "encoder_frontend.feature_extractor.layers.{i}.conv."),
    ("feature_encoder.layers.{i}.norm.", "encoder_frontend.feature_extractor.layers.{i}.layer_norm."),
    ("feature_encoder.layers.{i}.norm.", "encoder_frontend.feature_extractor.layers.{i}.group_norm."),
    ("feature_norm.", "encoder_frontend.post_extract_layer_norm."),
    ("feature_projection.", "encoder_frontend.model_dim_proj."),
    ("mask_embedding", "masker.temporal_mask_embed"),
    ("context.positional.conv.", "encoder_frontend.pos_encoder.conv."),
    ("context.layer_norm.", "encoder_frontend.layer_norm."),  # post-LN
    ("context.layer_norm.", "encoder.layer_norm."),  # pre-LN
    *transformer_layer_pairs("encoder.layers", "self_attn", "output_proj", "self_attn_layer_norm", "ffn.inner_proj",
                             "ffn.output_proj", "ffn_layer_norm"),
])
FAMILIES = ("wav2vec2", "wav2vec2_asr")
MODEL_FILE = Path("model") / "pp_00" / "tp_00" / "sdp_00.pt"
_STEP = re.compile(r"^step_(\d+)$")


def _plain_config(config: Any) -> dict[str, Any]:
    """A fairseq2 config dataclass or its YAML form as a plain dict (enums by name, as the YAML has them)."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)  # type: ignore[arg-type]
    return {k: (v.name if isinstance(v, Enum) else _plain_config(v) if isinstance(v, dict) else v)
            for k, v in config.items()}


def encoder_config(config: dict[str, Any], where: str) -> EncoderConfig:
    """Our ``EncoderConfig`` from fairseq2's ``encoder_config``; what we cannot compute stops naming the key."""
    enc = get_key(config, "encoder_config", where)
    key = "encoder_config."
    for name, expected in (("use_fbank", False), ("pos_encoder_type", "conv"), ("pos_encoder_depth", 1),
                           ("use_conformer", False)):
        require(enc.get(name, expected), expected, key + name, where)
    def need(name: str) -> Any:
        return get_key(enc, name, where)

    norm_first = need("norm_order") == "PRE"
    require(bool(enc.get("layer_norm_features", True)), not norm_first, key + "layer_norm_features", where,
            "a LayerNorm after the positional encoder goes with post-LN (norm_order POST) only")
    return EncoderConfig(
        name="fairseq2-wav2vec2",
        conv_layers=[[int(v) for v in spec] for spec in need("feature_extractor_layer_descs")],
        conv_norm="layer_norm" if enc.get("feature_extractor_layer_norm_convs") else "group_norm_first",
        conv_bias=bool(enc.get("feature_extractor_bias", False)),
        feature_grad_scale=float(enc.get("feature_grad_scale", 0.1)) or 0.1,
        model_dim=int(need("model_dim")), feature_dropout=float(enc.get("first_pass_dropout_p", 0.0)),
        context="transformer", num_layers=int(need("num_encoder_layers")), dropout=float(enc.get("dropout_p", 0.1)),
        num_heads=int(need("num_encoder_attn_heads")), ffn_dim=int(need("ffn_inner_dim")),
        attention_dropout=float(enc.get("attn_dropout_p", 0.1)),
        activation_dropout=float(enc.get("ffn_inner_dropout_p", 0.0)), layerdrop=float(enc.get("layer_drop_p", 0.0)),
        norm_first=norm_first, pos_conv_kernel=int(need("pos_conv_kernel_size")),
        pos_conv_groups=int(need("num_pos_conv_groups")),
    ).validate()


def from_fairseq2(state_dict: dict[str, Tensor], config: Any, family: str | None = None,
                  source: str = "fairseq2") -> PeerModel:
    """Import a fairseq2 wav2vec 2.0 (pretraining or ASR) state dict with its config (dataclass or dict)."""
    config = _plain_config(config)
    state = dict(state_dict["model"] if "model" in state_dict else state_dict)
    family = family or ("wav2vec2_asr" if "target_vocab_size" in config else "wav2vec2")
    if family not in FAMILIES:
        raise InteropError(f"{source}: model_family={family!r} cannot be represented; audiossl reads {FAMILIES}")
    state.pop("quantizer.num_updates", None)
    final = pop_prefixed(state, "final_proj.")
    quantizer = pop_prefixed(state, "quantizer.")
    target = pop_prefixed(state, "final_target_proj.")
    encoder = build_loaded_encoder(encoder_config(config, source), KEYS.to_ours(state, source), source)
    peer = PeerModel(source, "fairseq2", encoder)
    if family == "wav2vec2_asr" and final:
        peer.ctc_head = CTCHead(final["weight"], final["bias"], None, blank=0, dictionary_prefix=DICTIONARY_PREFIX,
                                dropout=float(config.get("final_dropout_p", 0.0)))
    elif quantizer:
        groups = int(config.get("num_codebooks", 2))
        entries = quantizer["entries"]
        peer.pretraining = PretrainingHead(
            codebook=entries.reshape(groups, entries.shape[1] // groups, entries.shape[2]),
            entry_proj_weight=quantizer["entry_proj.weight"], entry_proj_bias=quantizer["entry_proj.bias"],
            target_proj_weight=target["weight"], target_proj_bias=target["bias"],
            final_proj_weight=final["weight"], final_proj_bias=final["bias"],
            logit_temperature=float(config.get("logit_temp", 0.1)),
            num_negatives=int(config.get("num_distractors", 100)))
    return peer


def checkpoint_files(path: Path) -> tuple[Path, Path]:
    """``(model.yaml, state dict file)`` for a checkpoint directory, a step directory or a state file."""
    if path.is_file():
        metadata = next((p / "model.yaml" for p in path.parents if (p / "model.yaml").is_file()), None)
        if metadata is None:
            raise InteropError(f"{path}: no model.yaml in the directories above it (fairseq2 writes it next to "
                               "the step_N directories)")
        return metadata, path
    if _STEP.match(path.name):
        return checkpoint_files(path / MODEL_FILE)
    steps = sorted((int(m.group(1)), p) for p in path.iterdir()
                   if (m := _STEP.match(p.name)) and (p / MODEL_FILE).is_file())
    if not steps:
        raise InteropError(f"{path}: no step_N/{MODEL_FILE} under this fairseq2 checkpoint directory")
    return path / "model.yaml", steps[-1][1] / MODEL_FILE


def is_fairseq2_state(contents: Any) -> bool:
    state = contents.get("model", contents) if isinstance(contents, dict) else None
    return isinstance(state, dict) and any(str(k).startswith("encoder_frontend.") for k in state)


def load_fairseq2(path: str | Path, contents: Any = None) -> PeerModel:
    """Import a fairseq2 checkpoint (see the module docstring for the accepted paths)."""
    import yaml

    metadata_path, state_path = checkpoint_files(Path(path))
    metadata = yaml.safe_load(metadata_path.read_text())
    state = contents if contents is not None else read_torch_file(state_path)
    if not is_fairseq2_state(state):
        raise InteropError(f"{state_path}: not a fairseq2 wav2vec 2.0 state dict (no encoder_frontend.* keys)")
    return from_fairseq2(state, get_key(metadata, "model_config", str(metadata_path)),
                         metadata.get("model_family"), str(state_path))


__all__ = ["KEYS", "checkpoint_files", "encoder_config", "from_fairseq2", "is_fairseq2_state", "load_fairseq2"]
