"""Peer checkpoints in and out, proved against the peers themselves on real audio.

Every peer model here is built by its own library at a tiny size with random weights (perturbed away from
the init so LayerNorm gains, biases and weight-norm gains all matter), written by that library
(``save_pretrained``, ``state_dict``, fairseq2's metadata dumper), imported, and run side by side with our
encoder in eval mode on an espeak sentence that went through a FLAC file. Tolerance: 1e-4 max abs.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import soundfile
import torch

from audiossl.audio.espeak import VoiceSettings, synthesize
from audiossl.audio.io import AudioPolicy, read_audio
from audiossl.models.interop import InteropError, load_peer

TOL = 1e-4
LETTERS = list("ETAOINSHRDLUCWFYGPBVKXJQZ'")
TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "|", *LETTERS]
"""HF's usual CTC vocabulary layout: ``<pad>`` (the blank) first, then the specials, ``|`` and the letters."""


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """``(1, samples)``: an espeak sentence written as FLAC and read back like any corpus file."""
    path = tmp_path_factory.mktemp("audio") / "sentence.flac"
    soundfile.write(path, synthesize("the birch canoe slid on the smooth planks", VoiceSettings()).waveform, 16_000)
    result = read_audio(str(path), AudioPolicy())
    assert result.waveform is not None, result.detail
    return result.waveform[None, :32_000]


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter off its init (LayerNorm 1/0, zero biases) so a swapped weight cannot hide."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def hf_config(stable: bool, model_type: str = "wav2vec2", **extra):
    """BASE-like (post-LN, GroupNorm conv) or large-lv60-like (pre-LN "stable layer norm", LayerNorm convs
    with bias) at a tiny size; strides 5 x 4 x 4 (80x) keep sequences short."""
    from transformers import HubertConfig, Wav2Vec2Config

    fields = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(32, 32, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 4, 4), conv_bias=stable,
                  feat_extract_norm="layer" if stable else "group", do_stable_layer_norm=stable,
                  num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4, vocab_size=len(TOKENS))
    return (HubertConfig if model_type == "hubert" else Wav2Vec2Config)(**fields | extra)


def save_hf_ctc(directory: Path, stable: bool, tokens: list[str]) -> None:
    """A ``Wav2Vec2ForCTC`` plus the tokenizer files, both written by transformers."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC

    model = perturb(Wav2Vec2ForCTC(hf_config(stable, pad_token_id=tokens.index("<pad>"))))
    model.save_pretrained(directory)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    Wav2Vec2CTCTokenizer(str(directory / "vocab.json")).save_pretrained(directory)


def our_outputs(task, wave: torch.Tensor):
    lengths = torch.tensor([wave.shape[1]])
    with torch.no_grad():
        output = task.encoder(wave, lengths)
        return output, task.head(output.features, output.lengths).log_softmax(-1)


def compare_hidden(ours, theirs: list[torch.Tensor], first: int = 1) -> list[float]:
    """Max abs difference per corresponding layer (ours[i] vs theirs[i] for i >= first)."""
    diffs = [max_diff(ours.hidden_states[i], theirs[i]) for i in range(first, len(theirs))]
    assert max(diffs) < TOL, diffs
    assert all(float(h.std()) > 0.1 for h in ours.hidden_states), "degenerate activations prove nothing"
    return diffs


@pytest.mark.parametrize("stable", [False, True], ids=["post_ln_group_norm", "pre_ln_layer_norm"])
def test_hf_ctc_import_matches_every_layer_and_the_logits(tmp_path: Path, speech: torch.Tensor, stable: bool) -> None:
    from transformers import Wav2Vec2ForCTC

    from audiossl.downstream.peer_ctc import load_any_finetuned

    # the pre-LN variant puts the blank (<pad>) in the middle of the vocabulary: the import must move it
    tokens = [*TOKENS[1:5], "<pad>", *TOKENS[5:]] if stable else TOKENS
    save_hf_ctc(tmp_path, stable, tokens)
    hf = Wav2Vec2ForCTC.from_pretrained(tmp_path).eval()
    task, config, _ = load_any_finetuned(tmp_path)
    with torch.no_grad():
        ref = hf(speech, output_hidden_states=True)
        ref_extract = hf.wav2vec2.feature_extractor(speech).transpose(1, 2)
        ref_normed = hf.wav2vec2.feature_projection.layer_norm(ref_extract)
        ref_projected = hf.wav2vec2.feature_projection.projection(ref_normed)
    ours, log_probs = our_outputs(task, speech)
    compare_hidden(ours, list(ref.hidden_states))
    assert max_diff(ours.local_features, ref_extract) < TOL
    assert max_diff(ours.hidden_states[0], ref_projected) < TOL  # ours[0]: before the positional conv
    assert task.vocab.symbols[1:] == [t for t in tokens if t != "<pad>"]
    ref_log_probs = ref.logits.log_softmax(-1)
    columns = [tokens.index("<pad>")] + [tokens.index(s) for s in task.vocab.symbols[1:]]
    assert max_diff(log_probs, ref_log_probs[..., columns]) < TOL
    assert config["task"]["name"] == "asr" and config["downstream"]["upstream"]["source"] == str(tmp_path)


def test_legacy_weight_norm_keys_import_like_current_ones(tmp_path: Path, speech: torch.Tensor) -> None:
    """Checkpoints written before torch's weight-norm parametrizations name the positional conv's
    ``weight_g`` / ``weight_v``; they import to the same model (and HF itself reads them the same)."""
    from safetensors.torch import load_file, save_file
    from transformers import Wav2Vec2Model

    current, legacy = tmp_path / "current", tmp_path / "legacy"
    perturb(Wav2Vec2Model(hf_config(False))).save_pretrained(current)
    renames = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    state = {re.sub("|".join(map(re.escape, renames)), lambda m: renames[m.group(0)], k): v
             for k, v in load_file(current / "model.safetensors").items()}
    assert "encoder.pos_conv_embed.conv.weight_g" in state
    legacy.mkdir()
    (legacy / "config.json").write_text((current / "config.json").read_text())
    save_file(state, legacy / "model.safetensors", metadata={"format": "pt"})
    lengths = torch.tensor([speech.shape[1]])
    with torch.no_grad():
        a = load_peer(current).encoder(speech, lengths).features
        b = load_peer(legacy).encoder(speech, lengths).features
        hf = Wav2Vec2Model.from_pretrained(legacy).eval()(speech).last_hidden_state
    assert max_diff(a, b) == 0.0
    assert max_diff(b, hf) < TOL


def test_hubert_import_matches_every_layer(tmp_path: Path, speech: torch.Tensor) -> None:
    from transformers import HubertModel

    perturb(HubertModel(hf_config(False, "hubert"))).save_pretrained(tmp_path)
    hf = HubertModel.from_pretrained(tmp_path).eval()
    peer = load_peer(tmp_path)
    with torch.no_grad():
        ref = hf(speech, output_hidden_states=True)
        ours = peer.encoder(speech, torch.tensor([speech.shape[1]]))
    compare_hidden(ours, list(ref.hidden_states))
    assert peer.encoder.config.name == "hf-hubert" and peer.ctc_head is None


def test_torchaudio_cross_check_on_the_same_files(tmp_path: Path, speech: torch.Tensor) -> None:
    """torchaudio's own HF importer and ours read the same directory: the two encoders agree, and our
    import of torchaudio's model (state dict + kwargs read off the module) agrees with torchaudio's outputs."""
    from torchaudio.models.wav2vec2.utils import import_huggingface_model
    from transformers import Wav2Vec2ForCTC

    from audiossl.downstream.peer_ctc import load_any_finetuned, peer_vocabulary
    from audiossl.models.interop.torchaudio import from_torchaudio, torchaudio_kwargs_of

    save_hf_ctc(tmp_path, True, TOKENS)
    theirs = import_huggingface_model(Wav2Vec2ForCTC.from_pretrained(tmp_path)).eval()
    ours_from_hf, _, _ = load_any_finetuned(tmp_path)
    peer = from_torchaudio(theirs.state_dict(), torchaudio_kwargs_of(theirs), tokens=TOKENS)
    lengths = torch.tensor([speech.shape[1]])
    with torch.no_grad():
        layers = theirs.extract_features(speech)[0]
        emissions = theirs(speech)[0]
        via_hf = ours_from_hf.encoder(speech, lengths)
        via_ta = peer.encoder(speech, lengths)
    vocab, order = peer_vocabulary(peer.ctc_head, TOKENS)
    assert vocab.symbols[1:] == ours_from_hf.vocab.symbols[1:]
    for ours_layer, hf_layer, ta_layer in zip(via_ta.hidden_states[1:-1], via_hf.hidden_states[1:-1], layers):
        assert max_diff(ours_layer, ta_layer) < TOL and max_diff(ours_layer, hf_layer) < TOL
    assert max_diff(via_ta.features, via_hf.features) < TOL  # pre-LN: the final LayerNorm is in both
    logits = torch.nn.functional.linear(via_ta.features, peer.ctc_head.weight, peer.ctc_head.bias)
    assert max_diff(logits, emissions) < TOL


@pytest.mark.parametrize("stable", [False, True], ids=["post_ln_group_norm", "pre_ln_layer_norm"])
def test_export_to_hf_and_torchaudio_gives_the_same_outputs(tmp_path: Path, speech: torch.Tensor,
                                                           stable: bool) -> None:
    from torchaudio.models import wav2vec2_model
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC, Wav2Vec2Model

    from audiossl.downstream.peer_ctc import ctc_head_of
    from audiossl.downstream.base import TaskConfig
    from audiossl.downstream.ctc import CTCTask
    from audiossl.features.upstream import EncoderUpstream, UpstreamSpec
    from audiossl.asr.vocab import Vocabulary
    from audiossl.models.encoder import EncoderConfig, build_encoder
    from audiossl.models.interop.hf import export_hf
    from audiossl.models.interop.torchaudio import export_torchaudio

    config = EncoderConfig(conv_layers=[[32, 10, 5], [32, 8, 4], [32, 4, 4]], model_dim=24, num_layers=2,
                           num_heads=2, ffn_dim=48, pos_conv_kernel=6, pos_conv_groups=3, norm_first=stable,
                           conv_norm="layer_norm" if stable else "group_norm_first", conv_bias=stable)
    encoder = perturb(build_encoder(config))
    task = CTCTask(TaskConfig(), EncoderUpstream(encoder, UpstreamSpec("encoder", "random")),
                   Vocabulary.from_symbols(["|", *LETTERS])).eval()
    perturb(task.head)
    ours, log_probs = our_outputs(task, speech)
    head = ctc_head_of(task)

    export_hf(encoder, tmp_path / "ctc", head)
    hf = Wav2Vec2ForCTC.from_pretrained(tmp_path / "ctc").eval()
    export_hf(encoder, tmp_path / "bare")
    bare = Wav2Vec2Model.from_pretrained(tmp_path / "bare").eval()
    contents = export_torchaudio(encoder, head)
    ta = wav2vec2_model(**contents["config"])
    ta.load_state_dict(contents["state_dict"])
    with torch.no_grad():
        ref = hf(speech, output_hidden_states=True)
        ta_emissions = ta.eval()(speech)[0]
        bare_last = bare(speech).last_hidden_state
    compare_hidden(ours, list(ref.hidden_states))
    assert max_diff(bare_last, ours.features) < TOL
    assert max_diff(ref.logits.log_softmax(-1), log_probs) < TOL
    assert max_diff(ta_emissions.log_softmax(-1), log_probs) < TOL
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ctc")
    assert tokenizer.convert_tokens_to_ids(task.vocab.symbols[1:]) == list(range(1, len(task.vocab)))
    assert tokenizer.pad_token_id == 0 and hf.config.pad_token_id == 0


def test_unrepresentable_settings_stop_naming_the_key(tmp_path: Path) -> None:
    from transformers import Wav2Vec2Model

    from audiossl.models.encoder import EncoderConfig, build_encoder
    from audiossl.models.interop.hf import export_hf

    Wav2Vec2Model(hf_config(False, hidden_act="relu")).save_pretrained(tmp_path / "relu")
    with pytest.raises(InteropError, match="hidden_act='relu'"):
        load_peer(tmp_path / "relu")
    gru = build_encoder(EncoderConfig(context="gru", model_dim=16, num_layers=1, conv_layers=[[16, 10, 5]]))
    with pytest.raises(InteropError, match="encoder.context is 'gru'"):
        export_hf(gru, tmp_path / "gru")


# ------------------------------------------------------------------------------------------------ fairseq

def hf_to_fairseq(state: dict[str, torch.Tensor], group_norm: bool, finetuned: bool) -> dict[str, torch.Tensor]:
    """Rename HF weights to fairseq's layout, from the facts of HF's own conversion script (written here
    independently of the importer, so the test does not check a mapping against itself)."""
    renames = [
        (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
        (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.",
         r"feature_extractor.conv_layers.\1.2." if group_norm else r"feature_extractor.conv_layers.\1.2.1."),
        (r"^feature_projection\.layer_norm\.", "layer_norm."),
        (r"^feature_projection\.projection\.", "post_extract_proj."),
        (r"^masked_spec_embed$", "mask_emb"),
        (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$", "encoder.pos_conv.0.weight_g"),
        (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$", "encoder.pos_conv.0.weight_v"),
        (r"^encoder\.pos_conv_embed\.conv\.bias$", "encoder.pos_conv.0.bias"),
        (r"\.attention\.", ".self_attn."),
        (r"^(encoder\.layers\.\d+)\.layer_norm\.", r"\1.self_attn_layer_norm."),
        (r"\.feed_forward\.intermediate_dense\.", ".fc1."),
        (r"\.feed_forward\.output_dense\.", ".fc2."),
        (r"^quantizer\.codevectors$", "quantizer.vars"),
        (r"^project_hid\.", "final_proj."),
    ]
    converted = {}
    for key, value in state.items():
        if key.startswith("lm_head."):
            converted[key.replace("lm_head.", "w2v_encoder.proj.")] = value
            continue
        key = key.removeprefix("wav2vec2.")
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        converted[f"w2v_encoder.w2v_model.{key}" if finetuned else key] = value
    return converted


def fairseq_arch(stable: bool) -> dict:
    return {"_name": "wav2vec2", "extractor_mode": "layer_norm" if stable else "default",
            "conv_feature_layers": "[(32, 10, 5)] + [(32, 8, 4)] + [(32, 4, 4)]", "conv_bias": stable,
            "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 2,
            "activation_fn": "gelu", "layer_norm_first": stable, "conv_pos": 8, "conv_pos_groups": 4,
            "latent_vars": 12, "latent_groups": 2, "quantize_targets": True, "logit_temp": 0.1, "num_negatives": 10}


@pytest.mark.parametrize("kind", ["pretrained_cfg", "finetuned_cfg", "finetuned_old_args"])
def test_fairseq_checkpoints_import_like_the_hf_model_they_came_from(tmp_path: Path, speech: torch.Tensor,
                                                                     kind: str) -> None:
    from omegaconf import OmegaConf
    from transformers import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

    from audiossl.downstream.peer_ctc import load_any_finetuned

    stable, finetuned = kind == "finetuned_cfg", kind.startswith("finetuned")
    model_class = Wav2Vec2ForCTC if finetuned else Wav2Vec2ForPreTraining
    hf = perturb(model_class(hf_config(stable, codevector_dim=16, proj_codevector_dim=8,
                                       num_codevectors_per_group=12, pad_token_id=0)))
    state = hf_to_fairseq(hf.state_dict(), group_norm=not stable, finetuned=finetuned)
    arch, task = fairseq_arch(stable), {"normalize": False}
    if kind == "pretrained_cfg":
        contents = {"model": state, "cfg": OmegaConf.create({"model": arch, "task": task})}
    elif kind == "finetuned_cfg":
        model = {"_name": "wav2vec_ctc", "final_dropout": 0.0, "w2v_args": {"model": arch, "task": task}}
        contents = {"model": state, "cfg": OmegaConf.create({"model": model, "task": task})}
    else:  # 2020-era files: a flat argparse namespace, the pretraining one nested as w2v_args
        contents = {"model": state, "args": argparse.Namespace(arch="wav2vec_ctc", normalize=False,
                                                               w2v_args=argparse.Namespace(**arch))}
    torch.save(contents, tmp_path / "checkpoint.pt")
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{s} {100 - i}\n" for i, s in enumerate(TOKENS[4:])))
    peer = load_peer(tmp_path / "checkpoint.pt")
    with torch.no_grad():
        ref = hf(speech, output_hidden_states=True)
        ours = peer.encoder(speech, torch.tensor([speech.shape[1]]))
    compare_hidden(ours, list(ref.hidden_states))
    if not finetuned:
        assert peer.pretraining is not None and peer.pretraining.codebook.shape == (2, 12, 8)
        return
    task, _, _ = load_any_finetuned(tmp_path / "checkpoint.pt")  # dict.ltr.txt found next to the checkpoint
    # fairseq's dictionary is <s> <pad> </s> <unk> + dict.ltr.txt, <s> the blank: HF's table maps it to <pad>
    fairseq_tokens = ["<s>", "<pad>", "</s>", "<unk>", *TOKENS[4:]]
    assert task.vocab.symbols[1:] == fairseq_tokens[1:]
    _, log_probs = our_outputs(task, speech)
    assert max_diff(log_probs, ref.logits.log_softmax(-1)) < TOL


def test_fairseq_unrepresentable_setting_names_the_key(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    arch = fairseq_arch(False) | {"activation_fn": "relu"}
    torch.save({"model": {}, "cfg": OmegaConf.create({"model": arch, "task": {}})}, tmp_path / "relu.pt")
    with pytest.raises(InteropError, match="model.activation_fn='relu'"):
        load_peer(tmp_path / "relu.pt")


# ------------------------------------------------------------------------------------------------ fairseq2

def fairseq2_outputs(model, wave: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every Transformer layer's output (forward hooks) and the encoder's output, run by fairseq2 itself."""
    from fairseq2.nn import BatchLayout

    captured: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: captured.append(out)) for layer in model.encoder.layers]
    with torch.no_grad():
        seqs, layout, _ = model.encoder_frontend.extract_features(wave, BatchLayout.of(wave))
        seqs, _ = model.encoder_frontend.process_features(seqs, layout)
        final = model.encoder(seqs, layout)
    for hook in hooks:
        hook.remove()
    return captured, final


@pytest.mark.parametrize("family", ["wav2vec2", "wav2vec2_asr"])
def test_fairseq2_checkpoint_directory_imports(tmp_path: Path, speech: torch.Tensor, family: str) -> None:
    """Pretraining: post-LN, GroupNorm, a feature projection. ASR: pre-LN, LayerNorm convs with bias, and
    conv width = model width, where fairseq2 has no projection at all (we use an identity)."""
    from fairseq2.checkpoint.model_metadata import StandardModelMetadataDumper
    from fairseq2.file_system import LocalFileSystem
    from fairseq2.models.transformer import TransformerNormOrder
    from fairseq2.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2EncoderConfig, create_wav2vec2_model
    from fairseq2.models.wav2vec2.asr import Wav2Vec2AsrConfig, create_wav2vec2_asr_model
    from fairseq2.utils.structured import StandardValueConverter
    from fairseq2.utils.yaml import RuamelYamlDumper

    asr = family == "wav2vec2_asr"
    encoder = Wav2Vec2EncoderConfig(
        model_dim=32, feature_dim=32 if asr else 24, feature_extractor_layer_descs=[(24 + 8 * asr, 10, 5),
                                                                                   (24 + 8 * asr, 8, 4)],
        num_encoder_layers=2, num_encoder_attn_heads=2, ffn_inner_dim=64, pos_conv_kernel_size=8,
        num_pos_conv_groups=4, feature_extractor_layer_norm_convs=asr, feature_extractor_bias=asr,
        norm_order=TransformerNormOrder.PRE if asr else TransformerNormOrder.POST, layer_norm_features=not asr)
    if asr:
        config = Wav2Vec2AsrConfig(encoder_config=encoder, target_vocab_size=len(TOKENS))
        model = perturb(create_wav2vec2_asr_model(config))
    else:
        config = Wav2Vec2Config(encoder_config=encoder, final_dim=8, quantized_dim=16, num_codebook_entries=12)
        model = perturb(create_wav2vec2_model(config))
    file_system = LocalFileSystem()
    StandardModelMetadataDumper(file_system, RuamelYamlDumper(file_system), StandardValueConverter()).dump(
        tmp_path, family, config)
    state_file = tmp_path / "step_3" / "model" / "pp_00" / "tp_00" / "sdp_00.pt"
    state_file.parent.mkdir(parents=True)
    torch.save(model.state_dict(), state_file)
    peer = load_peer(tmp_path)
    layers, final = fairseq2_outputs(model, speech)
    with torch.no_grad():
        ours = peer.encoder(speech, torch.tensor([speech.shape[1]]))
    diffs = [max_diff(a, b) for a, b in zip(ours.hidden_states[1:-1], layers[:-1])]
    assert max(diffs, default=0.0) < TOL and max_diff(ours.features, final) < TOL
    if asr:
        logits = torch.nn.functional.linear(ours.features, peer.ctc_head.weight, peer.ctc_head.bias)
        assert max_diff(logits, model.final_proj(final)) < TOL
    else:
        assert peer.pretraining is not None and peer.pretraining.objective_config()["codebook_entries"] == 12


# ------------------------------------------------------------------------------------------------ pretraining loss

def test_wav2vec2_loss_terms_match_hf_pretraining(tmp_path: Path, speech: torch.Tensor) -> None:
    """Same weights (imported from an HF ``Wav2Vec2ForPreTraining``), same mask, same distractors.

    Normalisation: HF *sums* both terms over the masked frames of the batch (``reduction="sum"``, and
    ``diversity * mask.sum()``); ours averages them, so HF's values divided by the number of masked frames
    must equal ours. HF's quantiser reports the perplexity of the hard codes in eval mode and of the softmax
    in training mode, so its eval diversity matches our ``code_ppl`` and its training-mode diversity (all
    dropouts 0: deterministic apart from Gumbel noise, which only moves the sampled codes) our ``diversity``.
    """
    from transformers import Wav2Vec2ForPreTraining

    from audiossl.data.batch import AudioBatch
    from audiossl.objectives._contrastive import sample_excluding_self
    from audiossl.objectives.wav2vec2 import Wav2Vec2, Wav2Vec2Config

    zero = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                layerdrop=0.0, feat_quantizer_dropout=0.0)
    hf = perturb(Wav2Vec2ForPreTraining(hf_config(False, codevector_dim=16, proj_codevector_dim=8,
                                                  num_codevectors_per_group=12, num_negatives=10, **zero)))
    hf.save_pretrained(tmp_path)
    peer = load_peer(tmp_path)
    head = peer.pretraining
    objective = Wav2Vec2(Wav2Vec2Config(**head.objective_config()), peer.encoder)
    weights = {f"encoder.{k}": v for k, v in peer.encoder.state_dict().items()}
    objective.load_state_dict(weights | head.objective_state() | {"num_updates": torch.zeros((), dtype=torch.long)})
    objective.eval()

    waves = torch.cat([speech[:, :16_000], speech[:, 8_000:24_000]])
    batch = AudioBatch(waves, torch.full((2,), 16_000), ["a", "b"])
    frames = peer.encoder.feature_encoder.frame_lengths(batch.lengths)
    mask = objective.masking.draw(frames, int(frames[0]))
    masked = int(mask[0].sum())
    negatives = sample_excluding_self(2, masked, 10, torch.device("cpu"))
    width = int(frames[0])
    positions = [row.nonzero().flatten() for row in mask]
    hf_negatives = torch.zeros(2, width, 10, dtype=torch.long)
    for b in range(2):
        hf_negatives[b] = b * width + positions[b][0]  # unmasked frames: ignored by HF's loss
        hf_negatives[b, positions[b]] = b * width + positions[b][negatives[b]]

    with torch.no_grad():
        metrics = objective(batch, mask=mask, negatives=negatives).metrics
        evaluated = hf(waves, mask_time_indices=mask, sampled_negative_indices=hf_negatives)
        trained = hf.train()(waves, mask_time_indices=mask, sampled_negative_indices=hf_negatives)
    total = float(mask.sum())
    entries = 2 * 12
    assert abs(float(evaluated.contrastive_loss) / total - metrics["contrastive"]) < TOL
    assert abs(float(evaluated.diversity_loss) / total - (entries - metrics["code_ppl"]) / entries) < TOL
    assert abs(float(trained.diversity_loss) / total - metrics["diversity"]) < TOL
    assert 0.5 < metrics["contrastive"] < 10 and metrics["diversity"] > 0.01  # neither trivially 0
