"""Tiny upscaler model files for tests: random ESRGAN (both key layouts, Real-ESRGAN's pixel-unshuffle x2) and
Real-ESRGAN Compact networks, saved as .safetensors or .pth (zip or legacy), built by the reference modules."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from tests.reference.esrgan_arch import SRVGGNetCompact, old_esrgan, old_to_new_keys


def esrgan_reference(
    *, scale: int = 4, blocks: int = 1, filters: int = 8, growth: int = 4, seed: int = 0, shuffle: int = 1
) -> nn.Module:
    """The old-layout reference network (random weights); with `shuffle`, Real-ESRGAN's x2/x1 input folding."""
    torch.manual_seed(seed)
    net = old_esrgan(in_nc=3 * shuffle * shuffle, nf=filters, nb=blocks, gc=growth, upscale=scale * shuffle)
    return net.eval()


def compact_reference(*, scale: int = 4, convs: int = 2, features: int = 8, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = SRVGGNetCompact(num_feat=features, num_conv=convs, upscale=scale)
    with torch.no_grad():
        for layer in net.body:
            if isinstance(layer, nn.PReLU):
                layer.weight.uniform_(0.05, 0.4)
    return net.eval()


def save(net: nn.Module, path: Path, *, layout: str = "old", wrap: str | None = None, legacy: bool = False) -> Path:
    """Write the network's weights: `layout` "old" (model.N) or "new" (conv_first/body.N.rdbK); `wrap` puts them
    under a key (`params_ema`); `.pth` files go through torch.save (zip, or the legacy format)."""
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    if layout == "new":
        state = old_to_new_keys(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({f"{wrap}.{k}" if wrap else k: v for k, v in state.items()}, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path, _use_new_zipfile_serialization=not legacy)
    return path
