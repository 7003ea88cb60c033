"""The one paste reader and the one rule for a pasted model (by hash, then by name, else a fallback with a note)."""

from __future__ import annotations

from pathlib import Path

from engine.infotext import ModelHint
from engine.models.registry import ModelRegistry
from engine.params import OPTION_KEYS
from engine.paste import pasted_model, read_pasted

BLOCK = (
    "a cat\nNegative prompt: blurry\nSteps: 5, Sampler: Euler a, Seed: 7, Size: 64x96, Model hash: 0123456789, "
    "Model: anime-v3, ENSD: 31337, Face restoration: CodeFormer"
)


def test_a_pasted_block_gives_options_model_and_notes() -> None:
    paste = read_pasted(BLOCK)
    options = paste.options
    assert options["prompt"] == "a cat" and options["negative_prompt"] == "blurry"
    assert (options["steps"], options["seed"], options["width"], options["height"]) == ("5", "7", "64", "96")
    assert options["ensd"] == "31337"
    assert paste.model == ModelHint("anime-v3", "0123456789")
    assert any("Face restoration" in note for note in paste.notes)


def test_every_option_a_paste_gives_is_one_build_params_reads() -> None:
    hires = "x\nSteps: 5, Seed: 1, Denoising strength: 0.5, Hires upscale: 2, Hires steps: 3, Hires upscaler: Latent"
    for block in (BLOCK, hires):
        assert set(read_pasted(block).options) <= OPTION_KEYS


def test_an_img2img_paste_reads_the_strength_as_the_img2img_strength() -> None:
    options = read_pasted("x\nSteps: 5, Seed: 1, Denoising strength: 0.4", init_image="ab" * 32).options
    assert options["denoising_strength"] == "0.4" and "enable_hr" not in options


class Models:
    def __init__(self, *names: str) -> None:
        self.names = names

    def match(self, hint: ModelHint) -> str | None:
        return hint.name if hint.name in self.names else None


def test_a_pasted_model_the_server_has_is_used() -> None:
    assert pasted_model(Models("anime-v3"), ModelHint("anime-v3", None), "default") == ("anime-v3", None)


def test_a_missing_pasted_model_falls_back_with_a_note() -> None:
    assert pasted_model(Models(), ModelHint("anime-v3", None), "default") == (
        "default",
        "The pasted model `anime-v3` is not available here; used `default`.",
    )


def test_a_block_naming_no_model_uses_the_fallback_silently() -> None:
    assert pasted_model(Models(), ModelHint(None, None), "default") == ("default", None)


def test_the_registry_matches_a_known_hash_before_the_name(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    registry = ModelRegistry(models, tmp_path / "cache")
    shapes_hash = registry.model_hash(registry.resolve("builtin:shapes"))
    assert shapes_hash is not None
    assert registry.match(ModelHint("some civitai name", shapes_hash)) == "builtin:shapes"
    assert registry.match(ModelHint("BUILTIN:TINY", "ffffffffff")) == "builtin:tiny"


def test_the_registry_never_matches_a_pasted_name_to_the_hub(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, tmp_path / "cache")
    assert registry.match(ModelHint("someone/some-model", None)) is None
