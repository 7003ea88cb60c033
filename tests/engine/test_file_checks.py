"""Files are checked when listed, not when used: a LoRA that is malformed or no LoRA at all is listed as refused
with the reason (a rescan never fails on it); a LoRA whose layers do not fit the model is refused before anything
is queued, from headers alone; malformed safetensors headers name what is wrong."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.catalog import ExtraNetworks
from engine.embeddings import EmbeddingDB
from engine.errors import InvalidParamsError
from engine.loras import LoraLibrary
from engine.models import builtin
from engine.models.configs import sd15_config_folder
from engine.models.layers import layer_shapes_of
from engine.models.registry import ModelRegistry
from engine.models.single_file import read_header
from engine.vaes import VaeLibrary

KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"


def raw_safetensors(path: Path, header: object) -> None:
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body)


def kohya(path: Path, down: tuple[int, ...], up: tuple[int, ...]) -> None:
    save_file({f"{KEY}.lora_down.weight": torch.zeros(down), f"{KEY}.lora_up.weight": torch.zeros(up),
               f"{KEY}.alpha": torch.tensor(4.0)}, str(path))  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    loras = tmp_path / "Lora"
    loras.mkdir()
    kohya(loras / "good.safetensors", (4, 320), (320, 4))
    kohya(loras / "rank-mismatch.safetensors", (4, 320), (320, 8))
    save_file(
        {f"{KEY}.hada_w1_a": torch.zeros(4, 4), f"{KEY}.hada_w1_b": torch.zeros(4, 4)}, str(loras / "loha.safetensors")
    )
    save_file({"some.weight": torch.zeros(2, 2)}, str(loras / "not-a-lora.safetensors"))
    (loras / "garbage.safetensors").write_bytes(b"\xff" * 64)
    tensor = {"dtype": "F32", "shape": [4, 320], "data_offsets": [0, 5120]}
    raw_safetensors(
        loras / "bad-metadata.safetensors", {"__metadata__": {"ss_output_name": 7}, f"{KEY}.lora_down.weight": tensor}
    )
    raw_safetensors(loras / "bad-shape.safetensors", {f"{KEY}.lora_down.weight": {"dtype": "F32", "shape": "big"}})
    raw_safetensors(loras / "a-list.safetensors", [1, 2, 3])
    return loras


def test_every_malformed_or_unusable_file_is_listed_as_refused_with_its_reason(folder: Path, tmp_path: Path) -> None:
    library = LoraLibrary([folder], ModelRegistry(tmp_path / "m", tmp_path / "c").hashes)
    assert library.names() == ["good"]
    refused = library.refused()
    assert set(refused) == {"rank-mismatch", "loha", "not-a-lora", "garbage", "bad-metadata", "bad-shape", "a-list"}
    assert "rank 4 differs from its up weight's 8" in refused["rank-mismatch"]
    assert "LyCORIS" in refused["loha"]
    assert "no LoRA layers" in refused["not-a-lora"]
    assert "metadata" in refused["bad-metadata"] and "tensor" in refused["bad-shape"]
    assert "not a table" in refused["a-list"] and "not a safetensors file" in refused["garbage"]
    with pytest.raises(InvalidParamsError, match="LoRA 'loha' cannot be used: it is a LyCORIS"):
        library.resolve("loha")


async def test_the_catalog_lists_refused_loras_with_the_reason_and_a_rescan_survives_them(
    folder: Path, tmp_path: Path
) -> None:
    registry = ModelRegistry(tmp_path / "m", tmp_path / "c")
    library = LoraLibrary([folder], registry.hashes)
    catalog = ExtraNetworks(library, EmbeddingDB([tmp_path / "embeddings"]), VaeLibrary([], registry.hashes))
    await catalog.refresh()
    listed = {lora.name: lora for lora in await catalog.loras()}
    assert listed["good"].refused is None and listed["good"].short_hash
    assert listed["loha"].refused is not None and catalog.refused_loras() == 7


def test_a_lora_whose_layers_do_not_fit_the_model_is_refused_before_queueing(folder: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "m", tmp_path / "c")
    catalog = ExtraNetworks(LoraLibrary([folder], registry.hashes), EmbeddingDB([]))
    # `good` patches an SD 1.5 layer 320 wide and says nothing of its family: only its layers can tell.
    sd15 = layer_shapes_of(sd15_config_folder(tmp_path / "c"))
    catalog.check_prompt("a <lora:good:1>", layers=sd15)
    tiny = registry.layer_shapes("builtin:tiny")
    with pytest.raises(InvalidParamsError, match=r"LoRA 'good' does not fit this model: its layer unet\.down_blocks"):
        catalog.check_prompt("a <lora:good:1>", traits=registry.traits("builtin:tiny"), layers=tiny)


def test_layer_shapes_come_from_configs_alone_and_match_the_loaded_model(tmp_path: Path) -> None:
    from engine.pipeline import DiffusersEngine

    registry = ModelRegistry(tmp_path / "m", tmp_path / "c")
    shapes = registry.layer_shapes("builtin:shapes")
    assert shapes is not None
    engine = DiffusersEngine(registry, "cpu")
    assert dict(shapes) == engine._layer_shapes(engine.load("builtin:shapes"))
    assert registry.layer_shapes("someone/on-the-hub") is None


def test_a_header_that_is_not_safetensors_is_named_as_such(tmp_path: Path) -> None:
    raw_safetensors(tmp_path / "x.safetensors", {"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})
    with pytest.raises(ValueError, match="damaged safetensors header"):
        read_header(tmp_path / "x.safetensors")
    assert len(read_header(builtin.SHAPES_LORAS_DIR / "green.safetensors")) > 1


def test_a_checkpoint_cut_short_is_listed_as_a_damaged_or_incomplete_download(tmp_path: Path) -> None:
    from engine.models.entries import scan_path

    path = tmp_path / "half.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, str(path))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 1000])  # a download that stopped early
    entry = scan_path(path, allow_ckpt=False)
    assert entry is not None and entry.refused is not None
    assert entry.refused.startswith("damaged or incomplete download: the file has")
    assert f"its header promises {len(whole):,}" in entry.refused
