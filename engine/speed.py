"""Speed options for the GPU path, each a setting (measured in `python -m bench`): the weights' dtype, channels-last
memory layout, fused attention projections, and `torch.compile` of the UNet and the VAE decoder for a few bucketed
sizes (other sizes run eagerly, so the number of compiled graphs stays bounded).

Attention always runs through PyTorch's scaled-dot-product attention, which picks the best kernel the device has
(flash or memory-efficient attention on CUDA). None of these options changes what an image is, only the last bits of
its rounding; an option that would (fp8 weights, step caching) would have to be opt-in and written to the parameter
text, and none is offered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

COMPILE_TARGETS = ("off", "unet", "unet+vae")
# EASEL_COMPILE_MODE -> torch.compile's mode: "cudagraphs" replays each bucketed shape as a CUDA graph (one graph per
# size, batch and prompt length met, so still bounded); "max-autotune" benchmarks kernels while compiling.
COMPILE_MODES = {"default": None, "cudagraphs": "reduce-overhead", "max-autotune": "max-autotune-no-cudagraphs"}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# The sizes most jobs have: SD 1.x's 512-768 and SDXL's 1024-pixel aspect-ratio buckets.
DEFAULT_COMPILE_SIZES = ((512, 512), (768, 768), (1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896))


@dataclass(frozen=True)
class SpeedOptions:
    dtype: str = "auto"  # auto: fp16 on CUDA, fp32 elsewhere; or fp32 / fp16 / bf16
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: str = "off"  # off, unet, or unet+vae
    compile_sizes: tuple[tuple[int, int], ...] = DEFAULT_COMPILE_SIZES  # (width, height) in pixels
    compile_mode: str = "default"  # a key of COMPILE_MODES
    flux_offload: bool = False  # Flux's parts move to the GPU only while they run (diffusers' model offload)
    flux_t5_cpu: bool = False  # Flux's T5-XXL runs on the CPU

    def torch_dtype(self, device: str) -> torch.dtype:
        if self.dtype == "auto":
            return torch.float16 if device.startswith("cuda") else torch.float32
        return DTYPES[self.dtype]

    def flux_dtype(self, device: str) -> torch.dtype:
        """Flux computes in bf16 on a GPU, as Forge does (T5-XXL and the transformer overflow fp16), unless fp32 was
        asked for; the CPU computes in fp32 unless a dtype was set."""
        if device.startswith("cuda") and self.dtype in ("auto", "fp16"):
            return torch.bfloat16
        return self.torch_dtype(device)


class BucketedModule(torch.nn.Module):
    """A module run compiled for inputs whose spatial size (the last two dimensions of the first argument) is one of
    `sizes`, and eagerly for any other: a job at an odd size never makes torch compile another graph. Batch and
    sequence lengths are marked dynamic, so batches and long prompts reuse the graph."""

    def __init__(
        self,
        eager: torch.nn.Module,
        sizes: set[tuple[int, int]],
        dynamic_dims: dict[str, tuple[int, ...]],
        mode: str | None = None,
    ) -> None:
        super().__init__()
        self.eager = eager
        self.compiled = torch.compile(eager, dynamic=False, mode=mode)
        self.sizes = sizes  # (height, width) of the input tensor
        self.dynamic_dims = dynamic_dims  # keyword argument -> its dims that vary between calls

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.eager, name)  # dtype, device, config... of the module it stands for

    def forward(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if tuple(sample.shape[-2:]) not in self.sizes:
            return self.eager(sample, *args, **kwargs)
        # Every tensor's batch dimension varies (one job or several, CFG rows); so may other named dimensions.
        # A broadcast timestep (stride 0) and a materialised one must not make two graphs.
        args = tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)
        tensors = [sample, *args, *kwargs.values()]
        for value in list(tensors):
            if isinstance(value, dict):
                tensors.extend(value.values())
        for value in tensors:
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                torch._dynamo.mark_dynamic(value, 0)
        for name, dims in self.dynamic_dims.items():
            value = kwargs.get(name)
            if isinstance(value, torch.Tensor):
                for dim in dims:
                    torch._dynamo.mark_dynamic(value, dim)
        return self.compiled(sample, *args, **kwargs)


def apply_speed(pipe: Any, options: SpeedOptions, latent_scale: int) -> Any:
    """The speed options on a freshly loaded pipeline (in place); returns the UNet to call (compiled or not)."""
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.requires_grad_(False)  # inference only (and a compiled graph guards on it: LoRA loads flip it)
    if options.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if options.fuse_qkv:
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
    unet = pipe.unet
    if options.compile != "off":
        latent_sizes = {(h // latent_scale, w // latent_scale) for w, h in options.compile_sizes}
        mode = COMPILE_MODES[options.compile_mode]
        unet = BucketedModule(pipe.unet, latent_sizes, {"encoder_hidden_states": (0, 1)}, mode)
        if options.compile == "unet+vae":
            pipe.vae.decoder = BucketedModule(pipe.vae.decoder, latent_sizes, {}, mode)
        log.info("compiling (%s) for %s", options.compile_mode, ", ".join(f"{w}x{h}" for w, h in options.compile_sizes))
    return unet
