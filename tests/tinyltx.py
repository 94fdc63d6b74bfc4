"""Tiny, randomly initialised LTX-2.3 weights for tests: every file backend local needs, under the
names Lightricks publishes, built through ltx-core's own configurators (about 8 M parameters, 15 MB,
well under a second). Imports torch: used only by tests marked `local`.

Sizes the real model fixes are kept (128 latent channels, the audio VAE's 128 patched channels, the
vocoder's 128 mel inputs); everything else is as small as the configurators allow. Every parameter
and statistics buffer is re-initialised (some come out of torch.empty). The Gemma 3 folder holds
a two-layer text model with a word-level tokenizer, and its config.json, which backend local
applies (ltx-core otherwise builds the 12B architecture).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ltx_core.model.audio_vae import AudioDecoderConfigurator, AudioEncoderConfigurator, VocoderConfigurator
from ltx_core.model.transformer import LTXModelConfigurator
from ltx_core.model.upsampler import LatentUpsamplerConfigurator
from ltx_core.model.video_vae import VideoDecoderConfigurator, VideoEncoderConfigurator
from ltx_core.text_encoders.gemma import EmbeddingsProcessorConfigurator
from ltx_core.text_encoders.gemma.config import Gemma3ConfigData

GEMMA_HIDDEN = 32
GEMMA_LAYERS = 2

TRANSFORMER_CFG = {
    # --- values LTXModelConfigurator.from_config checks with check_config_value ---
    "dropout": 0.0,
    "attention_bias": True,
    "num_vector_embeds": None,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "use_linear_projection": False,
    "only_cross_attention": False,
    "cross_attention_norm": True,
    "double_self_attention": False,
    "upcast_attention": False,
    "standardization_norm": "rms_norm",
    "norm_elementwise_affine": False,
    "qk_norm": "rms_norm",
    "positional_embedding_type": "rope",
    "use_audio_video_cross_attention": True,
    "share_ff": False,
    "av_cross_ada_norm": True,
    "use_middle_indices_grid": True,
    # --- sizes (tiny) ---
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "num_layers": 1,
    "cross_attention_dim": 16,
    "in_channels": 128,  # fixed: VIDEO_LATENT_CHANNELS
    "out_channels": 128,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 8,
    "audio_cross_attention_dim": 16,
    "audio_in_channels": 128,  # fixed: 8 latent ch x 16 latent mel bins
    "audio_out_channels": 128,
    "positional_embedding_theta": 10000.0,
    "positional_embedding_max_pos": [20, 2048, 2048],
    "audio_positional_embedding_max_pos": [20],
    "timestep_scale_multiplier": 1000,
    "av_ca_timestep_scale_multiplier": 1000,
    # --- LTX-2.3 ("22B") style switches ---
    "rope_type": "split",
    "frequencies_precision": "float64",
    "apply_gated_attention": True,
    "cross_attention_adaln": True,
    "caption_channels": GEMMA_HIDDEN,
    "caption_proj_before_connector": True,  # -> FeatureExtractorV2, no caption_projection in DiT
    "caption_projection_first_linear": False,
    "caption_proj_input_norm": False,
    "caption_projection_second_linear": False,
    # --- text connectors (live in the EmbeddingsProcessor) ---
    "connector_num_attention_heads": 2,
    "connector_attention_head_dim": 8,
    "connector_num_layers": 1,
    "connector_positional_embedding_max_pos": [4096],
    "connector_apply_gated_attention": True,
    "audio_connector_num_attention_heads": 2,
    "audio_connector_attention_head_dim": 8,
    "audio_connector_num_layers": 1,
}

VAE_CFG = {
    "dims": 3,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,  # fixed
    "patch_size": 4,
    "norm_layer": "pixel_norm",
    "latent_log_var": "uniform",
    "spatial_padding_mode": "zeros",
    # 4 (patchify) x 2 x 2 x 2 = 32 spatial, 2 x 2 x 2 = 8 temporal  (fixed by VIDEO_SCALE_FACTORS)
    "encoder_blocks": [["compress_all", 1], ["compress_all", 1], ["compress_all", 1]],
    "decoder_blocks": [["compress_all", {"multiplier": 2}]] * 3,
    "decoder_base_channels": 4,  # feature channels 4*8=32 -> 16 -> 8 -> 4
    "causal_decoder": False,
    "timestep_conditioning": False,
}

AUDIO_VAE_CFG = {
    "model": {
        "params": {
            "sampling_rate": 16000,
            "ddconfig": {
                "ch": 128,  # fixed: per_channel_statistics(latent_channels=ch) acts on 8*16=128 patched channels
                "out_ch": 2,
                "in_channels": 2,
                "ch_mult": [1, 1, 1],  # 2 down-samplings: 64 mel -> 16, time /4
                "num_res_blocks": 1,
                "attn_resolutions": [],
                "resolution": 256,
                "z_channels": 8,
                "double_z": True,
                "norm_type": "pixel",
                "causality_axis": "height",
                "mid_block_add_attention": False,
                "mel_bins": 64,
                "dropout": 0.0,
            },
        }
    },
    "preprocessing": {"stft": {"hop_length": 160, "filter_length": 1024, "causal": True}, "mel": {"n_mel_channels": 64}},
}

_AMP = {"resblock": "AMP1", "stereo": True, "activation": "snakebeta", "resblock_kernel_sizes": [3],
        "resblock_dilation_sizes": [[1, 3, 5]], "upsample_initial_channel": 16}
VOCODER_CFG = {  # LTX-2.3 layout: vocoder (mel->16 kHz) + bandwidth-extension (16 -> 48 kHz)
    "vocoder": {**_AMP, "upsample_rates": [8, 5, 4], "upsample_kernel_sizes": [16, 15, 8],
                "use_tanh_at_final": False, "use_bias_at_final": False},
    "bwe": {**_AMP, "upsample_rates": [6, 5, 8], "upsample_kernel_sizes": [12, 15, 16],
            "use_tanh_at_final": False, "use_bias_at_final": False,
            "input_sampling_rate": 16000, "output_sampling_rate": 48000,
            "n_fft": 512, "hop_length": 80, "num_mels": 64},
}

UPSAMPLER_CFG = {"in_channels": 128, "mid_channels": 32, "num_blocks_per_stage": 1, "dims": 3,
                 "spatial_upsample": True, "temporal_upsample": False, "spatial_scale": 2.0,
                 "rational_resampler": False}

FULL_CONFIG = {"transformer": TRANSFORMER_CFG, "vae": VAE_CFG, "audio_vae": AUDIO_VAE_CFG, "vocoder": VOCODER_CFG}

# Gemma-3 tiny vocabulary (word level)
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_image>", "<end_of_image>", "<image_soft_token>",
            "<start_of_turn>", "<end_of_turn>"]
WORDS = ("a the cat dog runs jumps over under red blue green sky sea beach city night day sun moon man woman "
         "walks talks sings music loud quiet fast slow camera pans zooms blurry noise low quality bad video of and "
         "in on with is , .").split()


def tiny_gemma_config() -> Gemma3ConfigData:
    """A two-layer Gemma 3 (text width 32) with a one-layer vision tower, in ltx-core's config shape."""
    c = Gemma3ConfigData()
    tc, vc = c.text_config, c.vision_config
    tc.hidden_size, tc.intermediate_size, tc.num_hidden_layers = GEMMA_HIDDEN, 64, GEMMA_LAYERS
    tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim, tc.query_pre_attn_scalar = 2, 1, 16, 16
    tc.vocab_size, tc.sliding_window = len(SPECIALS) + len(WORDS), 512
    vc.hidden_size, vc.intermediate_size, vc.num_hidden_layers, vc.num_attention_heads = 16, 32, 1, 2
    vc.image_size, vc.patch_size = 28, 14
    c.mm_tokens_per_image = 4
    c.boi_token_index, c.eoi_token_index, c.image_token_index = 4, 5, 6
    c.eos_token_id = [1]
    return c


def reinit_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Deterministically re-initialise EVERY parameter (some, e.g. scale_shift_table, are torch.empty)
    and the torch.empty per-channel-statistics buffers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("alpha", "beta"):  # SnakeBeta (log-scale) -> exp(0)=1
                p.zero_()
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif leaf == "weight":  # norm gains
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        for name, b in model.named_buffers():
            if name.endswith("std-of-means"):
                b.fill_(1.0)
            elif name.endswith("mean-of-means"):
                b.zero_()
            elif name.endswith(("mel_basis", "forward_basis", "inverse_basis")):
                b.copy_(torch.rand(b.shape, generator=g) * 0.05)
    return model


def renamed(sd: dict, prefixes: dict[str, str]) -> dict:
    """`sd` with each key's prefix replaced as `prefixes` says (the first that matches; "" matches
    anything); a key no prefix matches is an error."""
    out = {}
    for k, v in sd.items():
        old = next((p for p in prefixes if k.startswith(p)), None)
        if old is None:
            raise KeyError(k)
        out[prefixes[old] + k[len(old):]] = v
    return out


def to_bf16(sd: dict) -> dict:
    return {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def nparams(sd: dict) -> int:
    return sum(v.numel() for v in sd.values())


DEV = "ltx-2.3-22b-dev.safetensors"
DISTILLED = "ltx-2.3-22b-distilled.safetensors"
UPSAMPLER = "ltx-2.3-spatial-upscaler-x2-1.0.safetensors"
DISTILLED_LORA = "ltx-2.3-22b-distilled-lora-384.safetensors"
GEMMA = "gemma-3-12b-it-qat-q4_0-unquantized"


def build_all(out: Path, style_lora: Path | None = None) -> dict:
    """Every weight file backend local needs, in `out`; a LoRA for the project at `style_lora`."""
    from ltxflow.backends.ltxworker import apply_gemma_config

    out.mkdir(parents=True, exist_ok=True)
    stats = {"gemma": build_gemma_dir(out / GEMMA)}
    apply_gemma_config(out / GEMMA)  # the embeddings processor is sized by the text encoder
    meta = {"config": json.dumps(FULL_CONFIG), "model_version": "2.3.0"}

    # --- transformer (DiT) -------------------------------------------------
    dit = reinit_(LTXModelConfigurator.from_config(FULL_CONFIG), 1)
    dit_sd = dit.state_dict()
    stats["transformer"] = nparams(dit_sd)
    ckpt = {f"model.diffusion_model.{k}": v for k, v in dit_sd.items()}

    # --- text embeddings processor (feature extractor V2 + 2 connectors) ---
    ep = reinit_(EmbeddingsProcessorConfigurator.from_config(FULL_CONFIG), 2)
    ep_sd = ep.state_dict()
    stats["embeddings_processor"] = nparams(ep_sd)
    ckpt.update(renamed(ep_sd, {"feature_extractor.": "text_embedding_projection.",
                                "video_connector.": "model.diffusion_model.video_embeddings_connector.",
                                "audio_connector.": "model.diffusion_model.audio_embeddings_connector."}))

    # --- video and audio VAEs: encoder and decoder share per_channel_statistics -----------
    vaes = (("video", "vae", (("encoder", VideoEncoderConfigurator, 3), ("decoder", VideoDecoderConfigurator, 4))),
            ("audio", "audio_vae", (("encoder", AudioEncoderConfigurator, 5), ("decoder", AudioDecoderConfigurator, 6))))
    for kind, prefix, parts in vaes:
        for name, conf, seed in parts:
            sd = reinit_(conf.from_config(FULL_CONFIG), seed).state_dict()
            stats[f"{kind}_{name}"] = nparams(sd)
            ckpt.update(renamed(sd, {"per_channel_statistics.": f"{prefix}.per_channel_statistics.",
                                     "": f"{prefix}.{name}."}))

    # --- vocoder (+BWE) ------------------------------------------------------
    voc = reinit_(VocoderConfigurator.from_config(FULL_CONFIG), 7)
    voc_sd = voc.state_dict()
    stats["vocoder"] = nparams(voc_sd)
    ckpt.update({f"vocoder.{k}": v for k, v in voc_sd.items()})

    save_file(to_bf16(ckpt), str(out / DEV), metadata=meta)
    (out / DISTILLED).write_bytes((out / DEV).read_bytes())  # one tiny model serves both roles

    # --- spatial upsampler (separate file, un-prefixed keys, flat config) ---
    ups = reinit_(LatentUpsamplerConfigurator.from_config(UPSAMPLER_CFG), 8)
    ups_sd = ups.state_dict()
    stats["upsampler"] = nparams(ups_sd)
    save_file(to_bf16(ups_sd), str(out / UPSAMPLER),
              metadata={"config": json.dumps(UPSAMPLER_CFG)})

    # --- LoRAs: ComfyUI format "diffusion_model.<module>.lora_A/B.weight" ---
    def make_lora(path: Path, rank: int, seed: int, scale: float) -> int:
        g = torch.Generator().manual_seed(seed)
        lsd = {}
        for k, v in dit_sd.items():
            if v.ndim == 2 and k.startswith("transformer_blocks.") and k.endswith(
                    (".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight")):
                mod = k[: -len(".weight")]
                lsd[f"diffusion_model.{mod}.lora_A.weight"] = torch.randn(rank, v.shape[1], generator=g) * scale
                lsd[f"diffusion_model.{mod}.lora_B.weight"] = torch.randn(v.shape[0], rank, generator=g) * scale
        save_file(to_bf16(lsd), str(path))
        return nparams(lsd)

    stats["distilled_lora"] = make_lora(out / DISTILLED_LORA, 4, 9, 0.1)
    if style_lora is not None:
        style_lora.parent.mkdir(parents=True, exist_ok=True)
        stats["style_lora"] = make_lora(style_lora, 2, 10, 0.3)
    stats["total"] = sum(v for k, v in stats.items() if not k.endswith("lora"))
    return stats


def build_gemma_dir(gdir: Path) -> int:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import Gemma3Config
    from transformers.models.gemma3 import Gemma3ForConditionalGeneration

    gdir.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(gdir / "tokenizer.json"))
    (gdir / "tokenizer.model").write_bytes(b"")  # only its *existence* is checked (find_matching_file)
    (gdir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
        "padding_side": "left", "model_max_length": 1024,
        "extra_special_tokens": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                 "image_token": "<image_soft_token>"},
    }))
    (gdir / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    (gdir / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Gemma3ImageProcessor", "do_resize": True, "size": {"height": 28, "width": 28},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True,
        "resample": 2, "processor_class": "Gemma3Processor"}))
    (gdir / "processor_config.json").write_text(json.dumps({"image_seq_length": 4, "processor_class": "Gemma3Processor"}))

    cfg = Gemma3Config.from_dict(tiny_gemma_config().to_dict())
    (gdir / "config.json").write_text(cfg.to_json_string())  # ltx-core ignores it; backend local applies it
    torch.manual_seed(11)
    model = reinit_(Gemma3ForConditionalGeneration(cfg), 11)
    # transformers-4.5x names -> the published checkpoint's names; lm_head is tied (ltx-core copies
    # embed_tokens into it)
    sd = renamed({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
                 {"model.language_model.": "language_model.model.", "model.vision_tower.": "vision_tower.",
                  "model.multi_modal_projector.": "multi_modal_projector."})
    save_file(to_bf16(sd), str(gdir / "model-00001-of-00001.safetensors"), metadata={"format": "pt"})
    return nparams(sd)


if __name__ == "__main__":  # a separate process: ltx-core's Gemma config is global state
    import sys

    print(json.dumps(build_all(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)))
