"""LoRA files: `<lora:name:weight>` names -> files in the LoRA folder, A1111's hashes, and per-job adapters.

Adapters are loaded into a pipeline once (diffusers + peft, unfused) and switched per job with `set_adapters`;
a job without LoRAs disables them, which gives exactly the base model's output.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InvalidParamsError
from engine.flux.lora import is_flux_lora
from engine.flux.lora import to_peft as flux_lora_state
from engine.models.detect import FAMILY_NAMES
from engine.models.hashing import HashCache
from engine.models.layers import LayerShapes, canonical
from engine.models.single_file import read_header
from engine.prompts.extra_networks import LoraCall

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraFile:
    name: str  # the file name without extension: what users type
    path: Path
    alias: str | None  # `ss_output_name` from kohya metadata, also accepted
    hash_hint: str | None  # `sshs_model_hash`, which A1111 prefers over computing the addnet hash
    family: str | None = None  # the model family it was made for ("sd1", "sd2", "sdxl"), where the file tells
    context_width: int | None = None  # the text-conditioning width its cross-attention layers take
    # module (`unet.down_blocks.0...to_q`, diffusers names) -> (down, up) weight shapes, read from the header
    layers: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict, compare=False)

    def layer_misfit(self, shapes: LayerShapes) -> str | None:
        """Why this LoRA's layers cannot patch a model with these layer shapes (the first that does not fit).

        A LoRA in SGM block names (kohya SDXL: `input_blocks_4_1`) maps to diffusers' blocks only with the model's
        UNet config, at load; for those only the family and width checks apply before then."""
        if any(_SGM_BLOCK.match(module) for module in self.layers):
            return None
        for module, (down, up) in self.layers.items():
            weight = shapes.get(module)
            if weight is None:
                return f"LoRA {self.name!r} patches a layer this model does not have ({module})"
            if len(down) < 2 or len(weight) < 2 or down[1] != weight[1] or up[0] != weight[0]:
                return (
                    f"LoRA {self.name!r} does not fit this model: its layer {module} maps "
                    f"{down[1] if len(down) > 1 else '?'} -> {up[0]} features, the model's maps "
                    f"{weight[1] if len(weight) > 1 else '?'} -> {weight[0]}"
                )
        return None

    def misfit(self, family: str, context_width: int | None) -> str | None:
        """Why this LoRA cannot patch a model of `family` whose cross-attention takes `context_width`, or None."""
        if self.family is not None and self.family != family:
            made_for, model = family_name(self.family), family_name(family)
            return f"LoRA {self.name!r} was made for {made_for}, and this model is {model}"
        if self.context_width is not None and context_width is not None and self.context_width != context_width:
            return (
                f"LoRA {self.name!r} was made for a model whose text conditioning is {self.context_width} wide; "
                f"this model's is {context_width}"
            )
        return None


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


# The width a cross-attention key projection reads is the text conditioning's: it tells the family apart.
_WIDTH_FAMILIES = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_RE_TO_K = re.compile(r"attn2[._]to_k.*(lora_down|lora_A|lora\.down)\.weight$")


def lora_traits(header: dict[str, Any]) -> tuple[str | None, int | None]:
    """(family, cross-attention width) of a LoRA from its safetensors header: kohya's metadata, SDXL's two text
    encoders (`lora_te1_`/`lora_te2_`, `text_encoder_2.`) or its SGM-named UNet blocks, else the width its
    cross-attention layers read (768 SD 1.x, 1024 SD 2.x, 2048 SDXL)."""
    metadata = header.get("__metadata__") or {}
    keys = [k for k in header if k != "__metadata__"]
    width = None
    for key in keys:
        shape = header[key].get("shape") if isinstance(header[key], dict) else None
        if _RE_TO_K.search(key) and isinstance(shape, list) and len(shape) == 2:
            width = int(shape[1])
            break
    base = str(metadata.get("ss_base_model_version", "") or metadata.get("modelspec.architecture", "")).lower()
    if base.startswith("flux") or is_flux_lora(keys):
        return "flux", None
    if base.startswith(("sdxl", "stable-diffusion-xl")):
        return "sdxl", width
    if base.startswith(("sd_v1", "stable-diffusion-v1")):
        return "sd1", width
    if base.startswith(("sd_v2", "stable-diffusion-v2")):
        return "sd2", width
    sdxl_markers = ("lora_te1_", "lora_te2_", "text_encoder_2.", "lora_unet_input_blocks_", "lora_unet_output_blocks_")
    if any(k.startswith(sdxl_markers) for k in keys):
        return "sdxl", width
    return (_WIDTH_FAMILIES.get(width) if width is not None else None), width


class LoraFileError(ValueError):
    """A file in the LoRA folder that is not a LoRA Easel can apply; the message says why."""


# Key endings of a LoRA's down/up weights after diffusers' own conversion (kohya and peft formats included).
_DOWN_UP = (
    (".lora.down.weight", ".lora.up.weight"),
    (".lora_A.weight", ".lora_B.weight"),
    (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"),
    ("_lora.down.weight", "_lora.up.weight"),
    (".lora_down.weight", ".lora_up.weight"),
)
# Old diffusers attention-processor names -> module names.
_OLD_NAMES = {"unet": {"to_out": "to_out.0"}, "text": {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj",
                                                         "to_out": "out_proj"}}  # fmt: skip
_SGM_BLOCK = re.compile(r"unet\.(down_blocks|up_blocks|mid_block)\.\d+\.\d+\.|unet\.(input|output|middle)_block")
_LYCORIS = ("hada_w1", "lokr_w1", ".oft_", "diff_b", ".glora_")


def lora_layers(header: dict[str, Any], family: str | None) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """(down, up) shapes per patched module, from the header alone: diffusers converts the keys (its kohya and
    peft rules) on `meta` tensors, so no weight is read. LoraFileError for what diffusers cannot apply."""
    import torch

    keys = [k for k in header if k != "__metadata__"]
    if not keys:
        raise LoraFileError("it holds no tensors")
    plain = any(key.endswith(("lora_down.weight", "lora_A.weight", "lora.down.weight")) for key in keys)
    if not plain and any(marker in key for key in keys for marker in _LYCORIS):
        raise LoraFileError("it is a LyCORIS LoHa/LoKr/OFT file; only LoRA and LoCon files are supported")
    state: dict[str, Any] = {}
    for key in keys:
        shape = header[key]["shape"]
        # Alphas are read as numbers by the conversion: give it real (one-element) tensors for those.
        state[key] = torch.ones(shape) if len(shape) == 0 or shape == [1] else torch.empty(shape, device="meta")
    if family == "sdxl":
        from diffusers import StableDiffusionXLPipeline as Pipeline
    else:
        from diffusers import StableDiffusionPipeline as Pipeline
    try:
        converted = flux_lora_state(state) if family == "flux" else Pipeline.lora_state_dict(state)[0]
    except Exception as err:  # the conversion raises many types for what it does not understand
        raise LoraFileError(f"diffusers cannot read its layers ({type(err).__name__}: {str(err)[:120]})") from err
    layers: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for key, tensor in converted.items():
        for down_end, up_end in _DOWN_UP:
            if not key.endswith(down_end):
                continue
            up = converted.get(key[: -len(down_end)] + up_end)
            if up is None:
                raise LoraFileError(f"{key} has no matching up weight")
            if tensor.shape[0] != up.shape[1]:
                raise LoraFileError(f"{key}: its rank {tensor.shape[0]} differs from its up weight's {up.shape[1]}")
            layers[_module(key[: -len(down_end)], down_end)] = (tuple(tensor.shape), tuple(up.shape))
            break
    if not layers:
        raise LoraFileError("it has no LoRA layers (lora_down/lora_up or lora_A/lora_B weights)")
    return layers


def _module(path: str, down_end: str) -> str:
    component, _, rest = path.partition(".")
    if down_end == "_lora.down.weight":  # `...attn1.processor.to_q` (UNet) or `...self_attn.to_q` (text encoder)
        rest = rest.replace(".processor.", ".")
        head, _, name = rest.rpartition(".")
        names = _OLD_NAMES["unet" if component == "unet" else "text"]
        rest = f"{head}.{names.get(name, name)}"
    elif ".processor." in rest:
        rest = rest.replace(".processor.", ".")
    return canonical(f"{component}.{rest}")


class LoraLibrary:
    """The LoRA folders (ours and any extra, e.g. the built-in shapes LoRAs), scanned by name."""

    def __init__(self, folders: list[Path], hashes: HashCache) -> None:
        self.folders = folders
        self.hashes = hashes
        self._files: dict[str, LoraFile] = {}
        self._refused: dict[str, str] = {}
        self.refresh()

    @classmethod
    def with_builtins(cls, folders: list[Path], hashes: HashCache) -> LoraLibrary:
        """The given folders and, after them, the LoRAs that come with the built-in models."""
        from engine.models.builtin import SHAPES_LORAS_DIR

        return cls([*folders, SHAPES_LORAS_DIR], hashes)

    def refresh(self) -> None:
        files: dict[str, LoraFile] = {}
        refused: dict[str, str] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*.safetensors")):
                if path.stem in files or path.stem in refused:
                    continue  # the first folder's file of a name wins
                try:
                    header = read_header(path)
                    metadata = header.get("__metadata__") or {}
                    family, width = lora_traits(header)
                    layers = lora_layers(header, family)
                except (OSError, ValueError) as err:  # LoraFileError and damaged headers included
                    log.warning("LoRA %s refused: %s", path.name, err)
                    refused[path.stem] = str(err)
                    continue
                files[path.stem] = LoraFile(
                    path.stem, path, metadata.get("ss_output_name"), metadata.get("sshs_model_hash"), family, width,
                    layers,
                )  # fmt: skip
        for entry in list(files.values()):
            if entry.alias and entry.alias not in files:
                files[entry.alias] = entry
        self._files = files
        self._refused = refused

    def refused(self) -> dict[str, str]:
        """File name (without extension) -> why it is not offered as a LoRA."""
        return dict(self._refused)

    def names(self) -> list[str]:
        return sorted({f.name for f in self._files.values()})

    def resolve(self, name: str) -> LoraFile:
        found = self._files.get(name) or next((f for k, f in self._files.items() if k.lower() == name.lower()), None)
        if found is None and name in self._refused:
            raise InvalidParamsError(f"LoRA {name!r} cannot be used: {self._refused[name]}.")
        if found is None:
            close = difflib.get_close_matches(name, list(self._files), n=3, cutoff=0.4)
            hint = f" Closest: {', '.join(close)}." if close else " No LoRAs are installed." if not self._files else ""
            raise InvalidParamsError(f"Unknown LoRA {name!r}.{hint}")
        return found

    def short_hash(self, lora: LoraFile) -> str:
        return (lora.hash_hint or self.hashes.addnet(lora.path))[:12]


def adapter_name(lora: LoraFile) -> str:
    # peft adapter names become module attributes: `train` or dotted names crash, so they are sanitised.
    return "lora_" + re.sub(r"\W", "_", lora.name)


def infotext_hashes(entries: list[tuple[str, str]]) -> str:
    """`Lora hashes` as A1111 writes it: `alias: hash, ...`, with `:` and `,` removed from the aliases."""
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {digest}" for name, digest in entries)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers 5 prints a "load report" table for every text encoder a LoRA patches; keep the log readable."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def apply_loras(pipe: Any, loaded: set[str], loras: list[tuple[LoraFile, LoraCall]]) -> None:
    """Make exactly these LoRAs active on the pipeline at their weights (loading files on first use)."""
    if not loras:
        if loaded:
            pipe.disable_lora()
        return
    names, weights = [], []
    for lora, _ in loras:
        name = adapter_name(lora)
        if name not in loaded:
            log.info("loading LoRA %s", lora.name)
            with _quiet_transformers():
                if lora.family == "flux":  # Easel's own conversion: diffusers' kohya one assumes Flux.1's width
                    from safetensors.torch import load_file

                    state = flux_lora_state(load_file(str(lora.path)))
                    pipe.load_lora_weights(state, adapter_name=name)
                else:
                    pipe.load_lora_weights(str(lora.path.parent), weight_name=lora.path.name, adapter_name=name)
            loaded.add(name)
        names.append(name)
    # Weights only for the components a LoRA really patches (diffusers warns on every job otherwise).
    components = pipe.get_list_adapters()
    for (_, call), name in zip(loras, names, strict=True):
        te = call.te_multiplier
        multipliers = {"text_encoder": te, "text_encoder_2": te, "unet": call.unet_multiplier,
                       "transformer": call.unet_multiplier}  # fmt: skip
        weights.append({part: w for part, w in multipliers.items() if name in components.get(part, [])})
    pipe.enable_lora()
    pipe.set_adapters(names, adapter_weights=weights)


@dataclass
class PatchedLoras:
    """LoRAs merged into the weights in place, for a compiled UNet: injecting adapter layers would change the
    module tree the compiled graph was made for (a recompile per LoRA set). The weights a merge touches are saved
    first and copied back to remove it, so a job without LoRAs is exactly the base model again."""

    current: tuple[tuple[str, float, float], ...] = ()
    saved: dict[tuple[str, str], Any] = field(default_factory=dict)  # (component, module name) -> original weight


def patch_loras(pipe: Any, state: PatchedLoras, loras: list[tuple[LoraFile, LoraCall]]) -> None:
    """Make exactly these LoRAs merged into the pipeline's weights (nothing to do when they already are)."""
    wanted = tuple((lora.name, call.te_multiplier, call.unet_multiplier) for lora, call in loras)
    if wanted == state.current:
        return
    _restore(pipe, state)
    if not loras:
        return
    from peft.tuners.lora import LoraLayer

    names = []
    for lora, _ in loras:
        name = adapter_name(lora)
        with _quiet_transformers():
            pipe.load_lora_weights(str(lora.path.parent), weight_name=lora.path.name, adapter_name=name)
        names.append(name)
    components = pipe.get_list_adapters()
    weights = []
    for (_, call), name in zip(loras, names, strict=True):
        te = call.te_multiplier
        multipliers = {"text_encoder": te, "text_encoder_2": te, "unet": call.unet_multiplier}
        weights.append({part: w for part, w in multipliers.items() if name in components.get(part, [])})
    pipe.set_adapters(names, adapter_weights=weights)
    patched = [part for part in _COMPONENTS if set(components.get(part, [])) & set(names)]
    for part in patched:
        for module_name, module in getattr(pipe, part).named_modules():
            if isinstance(module, LoraLayer):
                state.saved[(part, module_name)] = module.base_layer.weight.detach().clone()
    pipe.fuse_lora(components=patched, adapter_names=names)
    pipe.unload_lora_weights()  # the adapter layers go; the merged weights stay, in the original modules
    state.current = wanted


_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


def _restore(pipe: Any, state: PatchedLoras) -> None:
    modules = {part: dict(getattr(pipe, part).named_modules()) for part in {part for part, _ in state.saved}}
    for (part, module_name), weight in state.saved.items():
        modules[part][module_name].weight.copy_(weight)
    state.saved.clear()
    state.current = ()
