"""Speed options on the real engine: channels-last and fused projections change no image beyond rounding; a compiled
UNet compiles only for its bucketed sizes, during the warm-up, and never again (batches, long prompts, LoRA switches
and odd sizes included); LoRAs merged in place for it come off exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch._dynamo.utils import counters

from engine.loras import LoraLibrary
from engine.pipeline import DiffusersEngine
from engine.speed import COMPILE_MODES, BucketedModule, SpeedOptions
from tests.engine.conftest import tiny_params

pytestmark = pytest.mark.slow


def pixels(engine: DiffusersEngine, **changes: object) -> np.ndarray:
    return np.asarray(engine.generate(tiny_params(**changes))[0].image).astype(np.int16)


@pytest.mark.parametrize("options", [SpeedOptions(channels_last=True), SpeedOptions(fuse_qkv=True)], ids=str)
def test_a_layout_option_changes_only_the_rounding(engine: DiffusersEngine, options: SpeedOptions) -> None:
    fast = DiffusersEngine(engine.registry, "cpu", speed=options)
    assert np.abs(pixels(fast) - pixels(engine)).max() <= 2


def tiny_lora(folder: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    weights = {}
    for attn in ("attn1", "attn2"):
        key = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_{attn}_to_q"
        weights[f"{key}.lora_down.weight"] = torch.randn(4, 32, generator=generator) * 0.5
        weights[f"{key}.lora_up.weight"] = torch.randn(32, 4, generator=generator) * 0.5
        weights[f"{key}.alpha"] = torch.tensor(4.0)
    save_file(weights, str(folder / "quick.safetensors"))


def test_a_compiled_unet_never_compiles_again_after_the_warm_up(engine: DiffusersEngine, tmp_path: Path) -> None:
    tiny_lora(tmp_path)
    loras = LoraLibrary.with_builtins([tmp_path], engine.registry.hashes)
    compiled = DiffusersEngine(
        engine.registry, "cpu", speed=SpeedOptions(compile="unet", compile_sizes=((64, 64),)), loras=loras
    )
    compiled.warm_up("builtin:tiny")
    graphs = counters["stats"]["unique_graphs"]
    base = pixels(compiled)
    with_lora = pixels(compiled, prompt="a lighthouse at dusk <lora:quick:0.8>")
    other_weight = pixels(compiled, prompt="a lighthouse at dusk <lora:quick:0.3>")
    pixels(compiled, batch_size=3, seed=5, negative_prompt=" ".join(["fog"] * 90))  # a batch, a two-chunk negative
    pixels(compiled, width=96)  # not a bucket: eager
    after = pixels(compiled)
    assert counters["stats"]["unique_graphs"] == graphs
    assert not np.array_equal(with_lora, base) and not np.array_equal(other_weight, with_lora)
    assert np.array_equal(after, base)  # the merged LoRA came off exactly
    eager = DiffusersEngine(engine.registry, "cpu", loras=loras)
    assert np.abs(base - pixels(eager)).max() <= 2
    assert np.abs(with_lora - pixels(eager, prompt="a lighthouse at dusk <lora:quick:0.8>")).max() <= 2


def test_a_decode_that_does_not_fit_in_memory_is_done_again_in_tiles(
    engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    vae = engine.load("builtin:tiny").pipe.vae
    real = vae.decode
    tiled: list[bool] = []

    def short_of_memory(latents: torch.Tensor, **kwargs: object) -> object:
        tiled.append(vae.use_tiling)
        if not vae.use_tiling:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return real(latents, **kwargs)

    monkeypatch.setattr(vae, "decode", short_of_memory)
    [result] = engine.generate(tiny_params(width=256, height=256))
    assert result.image.size == (256, 256) and tiled == [False, True]
    assert not vae.use_tiling  # back to whole decodes for the next job


def test_the_cuda_graph_mode_compiles_a_bucketed_size_and_leaves_other_sizes_eager() -> None:
    conv = torch.nn.Conv2d(4, 4, 3, padding=1).requires_grad_(False)
    bucketed = BucketedModule(conv, {(8, 8)}, {}, COMPILE_MODES["cudagraphs"])  # on a CPU: compiled, no graphs
    counters.clear()
    for batch in (2, 3, 5):  # (a batch of 1 gets a graph of its own; with CFG a UNet batch is never 1)
        sample = torch.randn(batch, 4, 8, 8)
        torch.testing.assert_close(bucketed(sample), conv(sample))
    bucketed(torch.randn(1, 4, 6, 6))
    assert counters["stats"]["unique_graphs"] == 1
