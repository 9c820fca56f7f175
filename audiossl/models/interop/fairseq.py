"""fairseq wav2vec 2.0 / HuBERT checkpoints (``wav2vec_small.pt`` and its CTC fine-tunings), import only.

A checkpoint is ``{"model": state_dict, "cfg": {...}}`` (an omegaconf config; older files hold an argparse
``args`` instead). Pretrained weights sit at the top level (``feature_extractor.conv_layers.N.0.weight``,
``post_extract_proj``, ``encoder.pos_conv.0.weight_g``, ``encoder.layers.N.self_attn.*``, ``mask_emb``,
``quantizer.*``, ``project_q``, ``final_proj``); a fine-tuned one nests them under
``w2v_encoder.w2v_model.`` with ``w2v_encoder.proj`` as CTC head, and its config carries the pretraining
config as ``w2v_args``. The CTC head's vocabulary is not in the file: it is fairseq's ``Dictionary`` over a
``dict.ltr.txt`` (``<s> <pad> </s> <unk>`` first, ``<s>`` the blank), which the caller supplies.
"""

from __future__ import annotations

import ast
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
    plain,
    pop_prefixed,
    read_torch_file,
    require,
    split_prefix,
    transformer_layer_pairs,
)

KEYS = KeyMap([
    ("feature_encoder.layers.{i}.conv.", "feature_extractor.conv_layers.{i}.0."),
    ("feature_encoder.layers.{i}.norm.", "feature_extractor.conv_layers.{i}.2.1."),  # extractor_mode=layer_norm
    ("feature_encoder.layers.{i}.norm.", "feature_extractor.conv_layers.{i}.2."),  # default: GroupNorm, layer 0
    ("feature_norm.", "layer_norm."),
    ("feature_projection.", "post_extract_proj."),
    ("mask_embedding", "mask_emb"),
    ("context.positional.conv.weight_g", "encoder.pos_conv.0.parametrizations.weight.original0"),
    ("context.positional.conv.weight_v", "encoder.pos_conv.0.parametrizations.weight.original1"),
    ("context.positional.conv.", "encoder.pos_conv.0."),
    ("context.layer_norm.", "encoder.layer_norm."),
    *transformer_layer_pairs("encoder.layers", "self_attn", "out_proj", "self_attn_layer_norm", "fc1", "fc2",
                             "final_layer_norm"),
])
FINETUNED_PREFIX = "w2v_encoder.w2v_model."
DICTIONARY_PREFIX = ("<s>", "<pad>", "</s>", "<unk>")
"""fairseq's ``Dictionary`` puts these before a dictionary file's symbols; CTC uses ``<s>`` (index 0) as blank."""
OBJECTIVE_ONLY = ("quantizer.", "project_q.", "final_proj.", "label_embs_concat")
"""Pretraining-objective weights: wav2vec 2.0's quantiser and projections, HuBERT's cluster embeddings."""
CONV_NORMS = {"default": "group_norm_first", "layer_norm": "layer_norm"}
DEFAULT_CONV_LAYERS = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2"


def is_fairseq_checkpoint(contents: Any) -> bool:
    return isinstance(contents, dict) and "model" in contents and ("cfg" in contents or "args" in contents)


def parse_conv_layers(text: str, where: str) -> list[list[int]]:
    """fairseq's ``conv_feature_layers`` string (a Python expression of tuples, ``+`` and ``*``), without eval."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, (ast.List, ast.Tuple)):
            return [value(element) for element in node.elts]
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise InteropError(f"{where}: conv_feature_layers={text!r} is not a list of (dim, kernel, stride) tuples")

    try:
        layers = value(ast.parse(text, mode="eval").body)
    except SyntaxError:
        raise InteropError(f"{where}: conv_feature_layers={text!r} does not parse") from None
    return [[int(v) for v in spec] for spec in layers]


def configs(contents: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(architecture, fine-tuning overrides, task)`` as plain dicts, from ``cfg`` or an old ``args``.

    A fine-tuned checkpoint's architecture is its ``w2v_args`` (the pretraining config); the fine-tuning
    config's dropouts override it, as fairseq does when it builds the model.
    """
    cfg = plain(contents.get("cfg"))
    if cfg:
        model, task = cfg.get("model") or {}, cfg.get("task") or {}
    else:
        model = task = plain(contents.get("args")) or {}
    w2v_args = model.get("w2v_args")
    if w2v_args:
        return w2v_args.get("model", w2v_args), model, task
    if model.get("w2v_path") is not None or str(model.get("_name") or "").endswith("_ctc"):
        raise InteropError(f"{where}: a fine-tuned checkpoint without w2v_args (its pretraining config) "
                           "cannot be rebuilt")
    return model, {}, task


def encoder_config(arch: dict[str, Any], overrides: dict[str, Any], task: dict[str, Any], where: str) -> EncoderConfig:
    """Our ``EncoderConfig`` from fairseq's model config; anything we cannot compute stops naming the key."""
    require(arch.get("activation_fn", "gelu"), "gelu", "model.activation_fn", where)
    require(arch.get("layer_type", "transformer"), "transformer", "model.layer_type", where)
    require(int(arch.get("pos_conv_depth", 1)), 1, "model.pos_conv_depth", where)
    require(arch.get("pos_enc_type", "abs"), "abs", "model.pos_enc_type", where)
    require(int(arch.get("crop_seq_to_multiple", 1)), 1, "model.crop_seq_to_multiple", where)
    mode = arch.get("extractor_mode", "default")
    if mode not in CONV_NORMS:
        raise InteropError(f"{where}: model.extractor_mode={mode!r} cannot be represented; expected {list(CONV_NORMS)}")

    def setting(key: str, fine_tuned_key: str, default: float) -> float:
        return float(overrides.get(fine_tuned_key, arch.get(key, default)))

    grad = setting("feature_grad_mult", "feature_grad_mult", 0.1)
    return EncoderConfig(
        name=f"fairseq-{arch.get('_name', 'wav2vec2')}",
        conv_layers=parse_conv_layers(arch.get("conv_feature_layers", DEFAULT_CONV_LAYERS), where),
        conv_norm=CONV_NORMS[mode], conv_bias=bool(arch.get("conv_bias", False)),
        feature_grad_scale=grad if 0 < grad <= 1 else 0.1, normalize_waveform=bool(task.get("normalize", False)),
        model_dim=int(arch.get("encoder_embed_dim", 768)),
        feature_dropout=setting("dropout_input", "dropout_input", 0.0),
        context="transformer", num_layers=int(arch.get("encoder_layers", 12)),
        dropout=setting("dropout", "dropout", 0.1), num_heads=int(arch.get("encoder_attention_heads", 12)),
        ffn_dim=int(arch.get("encoder_ffn_embed_dim", 3072)),
        attention_dropout=setting("attention_dropout", "attention_dropout", 0.1),
        activation_dropout=setting("activation_dropout", "activation_dropout", 0.0),
        layerdrop=setting("encoder_layerdrop", "layerdrop", 0.0), norm_first=bool(arch.get("layer_norm_first", False)),
        pos_conv_kernel=int(arch.get("conv_pos", 128)), pos_conv_groups=int(arch.get("conv_pos_groups", 16)),
    ).validate()


def _pretraining_head(objective: dict[str, Tensor], arch: dict[str, Any], where: str) -> PretrainingHead | None:
    """wav2vec 2.0's quantiser and projections, when the checkpoint has them in the layout we compute."""
    if "quantizer.vars" not in objective or "project_q.weight" not in objective:
        return None
    require(bool(arch.get("target_glu", False)), False, "model.target_glu", where)
    require(int(arch.get("quantizer_depth", 1)), 1, "model.quantizer_depth", where)
    require(bool(arch.get("quantize_input", False)), False, "model.quantize_input", where)
    groups = int(arch.get("latent_groups", 2))
    entries = objective["quantizer.vars"]
    return PretrainingHead(
        codebook=entries.reshape(groups, entries.shape[1] // groups, entries.shape[2]),
        entry_proj_weight=objective["quantizer.weight_proj.weight"],
        entry_proj_bias=objective["quantizer.weight_proj.bias"],
        target_proj_weight=objective["project_q.weight"], target_proj_bias=objective["project_q.bias"],
        final_proj_weight=objective["final_proj.weight"], final_proj_bias=objective["final_proj.bias"],
        logit_temperature=float(arch.get("logit_temp", 0.1)), num_negatives=int(arch.get("num_negatives", 100)))


def load_fairseq(path: str | Path, contents: dict[str, Any] | None = None, trusted: bool = False) -> PeerModel:
    """Import a fairseq checkpoint: encoder, plus the pretraining head or the CTC head (tokens from a dict)."""
    where = str(path)
    contents = contents if contents is not None else read_torch_file(path, trusted)
    if not is_fairseq_checkpoint(contents):
        raise InteropError(f"{where}: not a fairseq checkpoint (expected 'model' with 'cfg' or 'args')")
    arch, overrides, task = configs(contents, where)
    state = dict(contents["model"])
    head = pop_prefixed(state, "w2v_encoder.proj.")
    if any(k.startswith(FINETUNED_PREFIX) for k in state):
        state, rest = split_prefix(state, FINETUNED_PREFIX)
        if rest:
            raise InteropError(f"{where}: unexpected parameter {sorted(rest)[0]!r} next to the fine-tuned encoder")
    objective = {k: state.pop(k) for k in [k for k in state if k.startswith(OBJECTIVE_ONLY)]}
    encoder = build_loaded_encoder(encoder_config(arch, overrides, task, where), KEYS.to_ours(state, where), where)
    peer = PeerModel(str(path), "fairseq", encoder, pretraining=_pretraining_head(objective, arch, where))
    if head:
        peer.ctc_head = CTCHead(head["weight"], head["bias"], None, blank=0, dictionary_prefix=DICTIONARY_PREFIX,
                                dropout=float(overrides.get("final_dropout", 0.0)))
    if objective and peer.pretraining is None:
        peer.notes.append(f"ignored objective weights {sorted(objective)[:4]}")
    return peer


__all__ = ["DICTIONARY_PREFIX", "KEYS", "configs", "encoder_config", "is_fairseq_checkpoint", "load_fairseq",
           "parse_conv_layers"]
