"""Flux.1's parts built from their files, offline, by their tensors' shapes: the transformer (BFL layout, kept in fp8
when stored so, computed in the inference dtype), the 16-channel VAE (`ae`, LDM layout), CLIP-L and T5-XXL
(transformers layout), and the tokenizers Easel ships (CLIP's rebuilt from its merges, Google's T5 one)."""

from __future__ import annotations

import gzip
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from engine.errors import ModelUnavailableError
from engine.flux.keys import strip_prefix, to_diffusers, transformer_config
from engine.models.builtin import publish

T5_TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "data" / "t5_tokenizer"
FLUX_VAE_SCALE, FLUX_VAE_SHIFT = 0.3611, 0.1159  # the ae's latent scaling (Forge's and diffusers' Flux configs)
FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
CLIP_HEADS_KEY = "easel.num_attention_heads"  # metadata a narrow test encoder carries (real CLIP-L: 768 / 64 = 12)


def read_tensors(path: Path, prefix: str = "", *, exclude: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors of a safetensors file whose names start with `prefix` (stripped), memory-mapped, and its
    metadata."""
    from safetensors import safe_open

    skipped = tuple(exclude)
    out: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
        for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
            if key.startswith(prefix) and not (skipped and key.startswith(skipped)):
                out[key[len(prefix) :]] = fh.get_tensor(key)
    return out, metadata


def storage_dtype(state: Mapping[str, Any]) -> torch.dtype:
    """How a transformer is stored: the dtype of most of its weights."""
    counts: dict[torch.dtype, int] = {}
    for tensor in state.values():
        counts[tensor.dtype] = counts.get(tensor.dtype, 0) + tensor.numel()
    return max(counts, key=lambda d: counts[d])


def read_gguf(path: Path) -> dict[str, Any]:
    """A GGUF transformer's tensors: quantized ones as diffusers' `GGUFParameter`s (still quantized), the rest as
    tensors."""
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    state: dict[str, Any] = load_gguf_checkpoint(str(path))
    return state


def logical_shape(tensor: Any) -> list[int]:
    """A tensor's shape as the model sees it: a GGUF-quantized one's rows of blocks counted in values."""
    return [int(n) for n in getattr(tensor, "quant_shape", tensor.shape)]


def is_quantized(tensor: Any) -> bool:
    return getattr(tensor, "quant_type", None) is not None


def transformer_from_state(state: Mapping[str, Any], dtype: torch.dtype, device: str) -> Any:
    """A `FluxTransformer2DModel` from a BFL-layout state dict (prefix or not). Stored in fp8, its linear layers stay
    fp8 and are cast to `dtype` layer by layer as they run (diffusers' layerwise casting); otherwise it is `dtype`."""
    from diffusers import FluxTransformer2DModel
    from diffusers.hooks import apply_layerwise_casting

    prefix = strip_prefix(state)
    bfl = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    config = transformer_config({k: logical_shape(v) for k, v in bfl.items()})
    quantized = any(is_quantized(v) for v in bfl.values())
    stored = storage_dtype({k: v for k, v in bfl.items() if not is_quantized(v)})
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(config)
    mapped = to_diffusers(bfl)
    if quantized:  # GGUF: linear layers that dequantize their blocks as they run (diffusers' GGUFLinear)
        from diffusers.quantizers.gguf.utils import _replace_with_gguf_linear

        _replace_with_gguf_linear(model, dtype, mapped)
    linear = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    converted = {}
    for key, tensor in mapped.items():
        keep = is_quantized(tensor) or (stored in FP8 and tensor.dtype in FP8 and key.rsplit(".", 1)[0] in linear)
        converted[key] = tensor if keep else tensor.to(dtype)
    blocks = {k: v for k, v in converted.items() if is_quantized(v)}
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in converted.items() if k not in blocks}, strict=False, assign=True
    )
    for key, tensor in blocks.items():  # quantized rows of blocks: their byte shape is not the layer's
        owner, name = key.rsplit(".", 1)
        model.get_submodule(owner)._parameters[name] = tensor
    missing = [k for k in missing if k not in blocks]
    if missing or unexpected:
        raise KeyError(f"the file does not fit Flux.1's layers: {', '.join([*missing, *unexpected][:4])}")
    model = model.to(device).eval()
    if stored in FP8 and not quantized:
        apply_layerwise_casting(model, storage_dtype=stored, compute_dtype=dtype, skip_modules_pattern=None,
                                skip_modules_classes=None)  # fmt: skip
    model.easel_storage = "gguf" if quantized else stored
    model.easel_compute = dtype
    return model


def vae_config(shapes: Mapping[str, list[int]]) -> dict[str, Any]:
    """The 16-channel `ae`'s `AutoencoderKL` config from its LDM-layout tensors' shapes."""
    levels = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down.")})
    blocks = {int(k.split(".")[4]) for k in shapes if k.startswith("encoder.down.0.block.")}
    return {
        "in_channels": int(shapes["encoder.conv_in.weight"][1]),
        "out_channels": int(shapes["decoder.conv_out.weight"][0]),
        "latent_channels": int(shapes["decoder.conv_in.weight"][1]),
        "block_out_channels": [int(shapes[f"encoder.down.{i}.block.0.conv1.weight"][0]) for i in levels],
        "layers_per_block": len(blocks),
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        "norm_num_groups": 32,
        "use_quant_conv": "quant_conv.weight" in shapes,
        "use_post_quant_conv": "post_quant_conv.weight" in shapes,
        "scaling_factor": FLUX_VAE_SCALE,
        "shift_factor": FLUX_VAE_SHIFT,
    }


def vae_from_state(state: Mapping[str, Any], dtype: torch.dtype, device: str) -> Any:
    from diffusers import AutoencoderKL

    from engine.models.single_file import _vae_map

    config = vae_config({k: list(v.shape) for k, v in state.items()})
    model = AutoencoderKL(**config)
    own = model.state_dict()
    loaded = {}
    for key, ldm in _vae_map(config, list(own)).items():
        tensor = state[ldm.removeprefix("first_stage_model.")]
        loaded[key] = tensor.reshape(own[key].shape)  # the LDM attention's 1x1 convolutions are linear layers here
    model.load_state_dict(loaded, strict=True)
    return model.to(device, dtype).eval()


def vae_state(model: Any) -> dict[str, Any]:
    """An `AutoencoderKL` in the ae's LDM layout (the inverse of `vae_from_state`), for test files."""
    from engine.models.single_file import _vae_map

    own = model.state_dict()
    out = {}
    for key, ldm in _vae_map(dict(model.config), list(own)).items():
        tensor = own[key]
        if "mid.attn_1." in ldm and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)
        out[ldm.removeprefix("first_stage_model.")] = tensor.contiguous()
    return out


def _clip_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, tensor in state.items():
        key = name.removeprefix("text_model.")
        if key.startswith(("embeddings.", "encoder.", "final_layer_norm.")) and not key.endswith("position_ids"):
            out[key] = tensor
    return out


def clip_from_state(state: Mapping[str, Any], metadata: Mapping[str, str], dtype: torch.dtype, device: str) -> Any:
    """CLIP-L (or a narrower test encoder) as Flux uses it: its pooled output, by the eos token's position."""
    from transformers import CLIPTextConfig, CLIPTextModel

    weights = _clip_keys(state)
    vocab, width = weights["embeddings.token_embedding.weight"].shape
    layers = {int(m.group(1)) for k in weights if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    config = CLIPTextConfig(
        vocab_size=int(vocab),
        hidden_size=int(width),
        intermediate_size=int(weights["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=len(layers),
        num_attention_heads=int(metadata.get(CLIP_HEADS_KEY, max(int(width) // 64, 1))),
        max_position_embeddings=int(weights["embeddings.position_embedding.weight"].shape[0]),
        projection_dim=int(width),
        hidden_act="quick_gelu",
        bos_token_id=0,
        eos_token_id=2,  # Forge's (and the original) config: the pooled token is the first highest id, the eos
        pad_token_id=1,
    )
    model = CLIPTextModel(config)
    model.load_state_dict({_own_clip_key(model, k): v for k, v in weights.items()}, strict=True)
    return model.to(device, dtype).eval()


def _own_clip_key(model: Any, key: str) -> str:
    return key if hasattr(model, "embeddings") else "text_model." + key  # transformers 5 flattens `text_model`


def t5_from_state(state: Mapping[str, Any], dtype: torch.dtype, device: str) -> Any:
    """T5-XXL's encoder (or a narrower test one) from its tensors: the widths, heads (the relative position bias's
    columns) and depth read from the shapes. An fp8 file stays fp8 in its linear layers, computed in `dtype`."""
    from diffusers.hooks import apply_layerwise_casting
    from transformers import T5Config, T5EncoderModel

    weights = {k: v for k, v in state.items() if k.startswith(("shared.", "encoder."))}
    if "shared.weight" not in weights and "encoder.embed_tokens.weight" in weights:
        weights["shared.weight"] = weights["encoder.embed_tokens.weight"]
    weights.pop("encoder.embed_tokens.weight", None)
    vocab, width = weights["shared.weight"].shape
    buckets, heads = weights["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
    layers = {int(m.group(1)) for k in weights if (m := re.match(r"encoder\.block\.(\d+)\.", k))}
    config = T5Config(
        vocab_size=int(vocab),
        d_model=int(width),
        d_kv=int(weights["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0]) // int(heads),
        d_ff=int(weights["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0]),
        num_layers=len(layers),
        num_heads=int(heads),
        relative_attention_num_buckets=int(buckets),
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
    )
    config.dense_act_fn = "gelu_pytorch_tanh"
    stored = storage_dtype(weights)
    with torch.device("meta"):
        model = T5EncoderModel(config)
    linear = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    converted = {
        k: v if stored in FP8 and v.dtype in FP8 and k.rsplit(".", 1)[0] in linear else v.to(dtype)
        for k, v in weights.items()
    }
    converted["encoder.embed_tokens.weight"] = converted["shared.weight"]
    model.load_state_dict(converted, strict=True, assign=True)
    model.tie_weights()
    model = model.to(device).eval()
    if stored in FP8:
        apply_layerwise_casting(model, storage_dtype=stored, compute_dtype=dtype, skip_modules_pattern=None,
                                skip_modules_classes=None)  # fmt: skip
    return model


def t5_tokenizer(cache_dir: Path) -> Any:
    """Google's T5 v1.1 tokenizer (Apache-2.0) as Forge ships it for Flux, unpacked once into the cache."""
    from transformers import T5TokenizerFast

    folder = cache_dir / "tokenizers" / "t5-v1_1"

    def write(partial: Path) -> None:
        partial.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(T5_TOKENIZER_DIR / name, partial / name)
        with gzip.open(T5_TOKENIZER_DIR / "tokenizer.json.gz") as fh:
            (partial / "tokenizer.json").write_bytes(fh.read())

    if not (folder / "tokenizer.json").exists():
        publish(folder, "tokenizer.json", write)
    return T5TokenizerFast.from_pretrained(str(folder))


def clip_tokenizer(cache_dir: Path) -> Any:
    from transformers import CLIPTokenizer

    from engine.models.tokenizer import write_clip_tokenizer

    folder = cache_dir / "tokenizers" / "clip-l"
    if not (folder / "tokenizer_config.json").exists():
        publish(folder, "tokenizer_config.json", write_clip_tokenizer)
    return CLIPTokenizer.from_pretrained(str(folder))


def refuse(what: str, path: Path, err: BaseException) -> ModelUnavailableError:
    return ModelUnavailableError(f"The {what} {path.name} could not be loaded: {err}")


def flux_parts(
    path: Path,
    modules: Mapping[str, Any],
    *,
    dtype: torch.dtype,
    device: str,
    cache_dir: Path,
    t5_device: str | None = None,
) -> dict[str, Any]:
    """A Flux.1 model's parts from its transformer file and its modules (`engine.flux.modules.Module`s, which may be
    the same file with a prefix): each refused with the file's name and the reason when it does not load."""
    if path.suffix.lower() == ".gguf":
        state = read_gguf(path)
    else:
        state, _ = read_tensors(path, exclude=("vae.", "first_stage_model.", "text_encoders.", "cond_stage_model."))
    try:
        transformer = transformer_from_state(state, dtype, device)
    except (KeyError, ValueError, RuntimeError) as err:
        raise refuse("Flux transformer", path, err) from err
    del state
    parts: dict[str, Any] = {"transformer": transformer}
    ae = modules["ae"]
    ae_state, _ = read_tensors(ae.path, ae.prefix)
    try:
        parts["vae"] = vae_from_state(ae_state, dtype, device)
    except (KeyError, ValueError, RuntimeError) as err:
        raise refuse("Flux VAE", ae.path, err) from err
    if int(parts["vae"].config.latent_channels) * 4 != int(transformer.config.out_channels):
        raise ModelUnavailableError(
            f"The VAE {ae.path.name} makes {parts['vae'].config.latent_channels}-channel latents; the transformer "
            f"{path.name} draws {int(transformer.config.out_channels) // 4}."
        )
    clip = modules["clip_l"]
    clip_state, metadata = read_tensors(clip.path, clip.prefix)
    try:
        parts["text_encoder"] = clip_from_state(clip_state, metadata, dtype, device)
    except (KeyError, ValueError, RuntimeError) as err:
        raise refuse("CLIP-L text encoder", clip.path, err) from err
    t5 = modules["t5xxl"]
    t5_state, _ = read_tensors(t5.path, t5.prefix)
    try:
        parts["text_encoder_2"] = t5_from_state(t5_state, dtype, t5_device or device)
    except (KeyError, ValueError, RuntimeError) as err:
        raise refuse("T5-XXL text encoder", t5.path, err) from err
    _fits("CLIP-L text encoder", clip.path, parts["text_encoder"].config.hidden_size,
          "pooled", transformer.config.pooled_projection_dim)  # fmt: skip
    _fits("T5-XXL text encoder", t5.path, parts["text_encoder_2"].config.d_model,
          "text", transformer.config.joint_attention_dim)  # fmt: skip
    parts["tokenizer"] = clip_tokenizer(cache_dir)
    parts["tokenizer_2"] = t5_tokenizer(cache_dir)
    return parts


def _fits(what: str, path: Path, width: int, kind: str, wanted: int) -> None:
    if int(width) != int(wanted):
        raise ModelUnavailableError(
            f"The {what} {path.name} is {width} wide; this Flux transformer takes a {wanted}-wide {kind} input: "
            "they are not parts of one model."
        )


def flux_pipeline(parts: Mapping[str, Any]) -> Any:
    """A diffusers `FluxPipeline` holding the parts (Easel runs its own loop; the pipeline is their container)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), **parts)
