"""The LoRA/embedding catalog the bot lists from: kohya metadata (trigger words, base model), A1111 short hashes,
names resolved as the pipeline resolves them, rescans, and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.catalog import EmbeddingInfo, ExtraNetworks, base_model, trigger_words
from engine.embeddings import EmbeddingDB
from engine.errors import InvalidParamsError
from engine.loras import LoraLibrary
from engine.models import builtin
from engine.models.hashing import HashCache, addnet_hash

ROOT = Path(__file__).resolve().parents[2]


def tag_frequency(**folders: dict[str, int]) -> dict[str, str]:
    return {"ss_tag_frequency": json.dumps(folders)}


def test_trigger_words_are_the_most_frequent_tags_summed_over_folders() -> None:
    metadata = tag_frequency(
        **{"10_ohwx": {"ohwx": 40, "smile": 12, "outdoors": 3}, "5_extra": {"smile": 30, "hat": 3, "a": 1, "b": 1}}
    )
    assert trigger_words(metadata) == ("smile", "ohwx", "hat", "outdoors", "a")


def test_an_authors_trigger_phrase_wins_over_the_tags() -> None:
    metadata = tag_frequency(x={"smile": 5}) | {"modelspec.trigger_phrase": " ohwx man "}
    assert trigger_words(metadata) == ("ohwx man",)


def test_unreadable_tag_frequency_gives_no_trigger_words() -> None:
    assert trigger_words({"ss_tag_frequency": "{not json"}) == ()
    assert trigger_words({"ss_tag_frequency": json.dumps(["a"])}) == ()
    assert trigger_words({}) == ()


def test_base_model_prefers_kohyas_field() -> None:
    assert base_model({"ss_base_model_version": "sd_v1", "modelspec.architecture": "x"}) == "sd_v1"
    assert base_model({"modelspec.architecture": "stable-diffusion-v1/lora"}) == "stable-diffusion-v1/lora"
    assert base_model({}) is None


def write_lora(path: Path, metadata: dict[str, str] | None = None, seed: int = 0) -> Path:
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"  # an SD 1.x layer, 320 wide
    generator = torch.Generator().manual_seed(seed)
    weights = {
        f"{key}.lora_down.weight": torch.randn((4, 320), generator=generator),
        f"{key}.lora_up.weight": torch.randn((320, 4), generator=generator),
        f"{key}.alpha": torch.tensor(4.0),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path), metadata=metadata)
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    loras, embeddings = tmp_path / "Lora", tmp_path / "embeddings"
    write_lora(
        loras / "ohwx-person.safetensors",
        tag_frequency(img={"ohwx": 9, "smile": 2}) | {"ss_base_model_version": "sd_v1", "ss_output_name": "ohwx_v2"},
    )
    write_lora(loras / "hinted.safetensors", {"sshs_model_hash": "feedfacecafe0123456789"}, seed=1)
    embeddings.mkdir()
    save_file({"emb_params": torch.zeros((3, 32))}, str(embeddings / "fancy.safetensors"))
    save_file({"clip_l": torch.zeros((1, 768)), "clip_g": torch.zeros((1, 1280))}, str(embeddings / "xl.safetensors"))
    return loras, embeddings


@pytest.fixture
def catalog(folders: tuple[Path, Path], tmp_path: Path) -> Iterator[ExtraNetworks]:
    loras, embeddings = folders
    library = LoraLibrary([loras, builtin.SHAPES_LORAS_DIR], HashCache(tmp_path / "hashes.json"))
    networks = ExtraNetworks(library, EmbeddingDB([embeddings]))
    yield networks
    networks.close()


async def test_loras_carry_a1111_short_hashes_and_kohya_metadata(catalog: ExtraNetworks, tmp_path: Path) -> None:
    found = {lora.name: lora for lora in await catalog.loras()}
    assert sorted(found) == ["green", "hinted", "ohwx-person"]  # the built-in shapes LoRA is listed too
    person = found["ohwx-person"]
    assert person.short_hash == addnet_hash(tmp_path / "Lora" / "ohwx-person.safetensors")[:12]
    assert (person.trigger_words, person.base_model) == (("ohwx", "smile"), "sd_v1")
    assert found["hinted"].short_hash == "feedfacecafe"  # kohya's sshs_model_hash, as A1111 prefers
    assert found["green"].short_hash == addnet_hash(builtin.SHAPES_LORAS_DIR / "green.safetensors")[:12]


def test_names_resolve_as_the_pipeline_resolves_them(catalog: ExtraNetworks) -> None:
    assert catalog.lora_names() == ["green", "hinted", "ohwx-person"]
    assert catalog.resolve_lora(" GREEN ") == "green"
    assert catalog.resolve_lora("ohwx_v2") == "ohwx-person"  # kohya's ss_output_name
    with pytest.raises(InvalidParamsError, match=r"Unknown LoRA 'ohwx-persn'\. Closest: ohwx-person"):
        catalog.resolve_lora("ohwx-persn")


def test_prompt_tags_are_checked_before_generation(catalog: ExtraNetworks) -> None:
    catalog.check_prompt("a man <lora:ohwx-person:0.7> <lora:green:te=1:unet=0.5>", "blurry")
    with pytest.raises(InvalidParamsError, match="Unknown LoRA 'gren'"):
        catalog.check_prompt("a cat", "<lora:gren:1>")
    with pytest.raises(InvalidParamsError, match="only <lora:name:weight> tags"):
        catalog.check_prompt("<hypernet:x:1>")
    with pytest.raises(InvalidParamsError, match="multiplier must be a number"):
        catalog.check_prompt("<lora:green:lots>")


async def test_embeddings_are_listed_with_their_vectors_and_family_or_why_they_are_refused(
    catalog: ExtraNetworks, folders: tuple[Path, Path]
) -> None:
    (folders[1] / "broken.safetensors").write_bytes(b"not safetensors")
    await catalog.refresh()
    [broken, fancy, xl] = catalog.embeddings()
    assert fancy == EmbeddingInfo("fancy", 3, family="sd1")
    assert xl == EmbeddingInfo("xl", 1, family="sdxl")
    assert broken.vectors is None and broken.refused is not None and "safetensors" in broken.refused


async def test_refresh_finds_new_loras_and_embeddings(catalog: ExtraNetworks, folders: tuple[Path, Path]) -> None:
    loras, embeddings = folders
    write_lora(loras / "sub" / "new-style.safetensors", seed=2)
    (loras / "hinted.safetensors").unlink()
    save_file({"emb_params": torch.zeros((1, 32))}, str(embeddings / "other.safetensors"))
    await catalog.refresh()
    assert catalog.lora_names() == ["green", "new-style", "ohwx-person"]
    assert [e.name for e in catalog.embeddings()] == ["fancy", "other", "xl"]


async def test_loras_are_listed_with_the_family_they_were_made_for(catalog: ExtraNetworks) -> None:
    found = {lora.name: lora.family for lora in await catalog.loras()}
    assert found["ohwx-person"] == "sd1"  # kohya's ss_base_model_version


def test_the_catalog_module_imports_no_torch() -> None:
    code = "import sys, engine.catalog; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
