"""Picking LoRAs from Discord: `/imagine lora:` (autocomplete, the A1111 tag in the prompt, refusals before
queueing), `/lora list` (hashes, trigger words, embeddings, pages within an embed) and `/model refresh` counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.catalog import ExtraNetworks
from engine.embeddings import EmbeddingDB
from engine.loras import LoraLibrary
from engine.models import builtin
from engine.models.hashing import HashCache, addnet_hash
from tests.bot.harness import ALICE, SERVER_ADMIN, Harness, make_settings
from tests.bot.helpers import assert_deferred_ephemeral, assert_ephemeral, contents, imagine
from tests.bot.spec import validation_errors
from tests.bot.standin import InteractionHandle, Standin
from tests.fakes import FakeEmbedding, FakeExecutor, FakeLora, FakeNetworks, FakeRegistry

# -- /imagine lora: ---------------------------------------------------------------------------------------------


async def choices(harness: Harness, typed: str) -> list[str]:
    handle = await harness.standin.autocomplete("imagine", ALICE, "lora", prompt="x", lora=typed)
    body = (await harness.standin.callback(handle)).json
    assert body["type"] == 8
    return [choice["value"] for choice in body["data"]["choices"]]


async def test_lora_autocomplete_offers_prefix_matches_first(harness: Harness) -> None:
    assert await choices(harness, "a") == ["add-detail", "anime-lineart", "more-details"]
    assert await choices(harness, "DETAIL") == ["add-detail", "more-details"]


async def test_lora_autocomplete_offers_at_most_25(harness: Harness, networks: FakeNetworks) -> None:
    networks.loras_ = [FakeLora(f"style-{i:02d}") for i in range(40)]
    offered = await choices(harness, "")
    assert len(offered) == 25 and offered[0] == "style-00"


async def test_lora_option_appends_the_a1111_tag_to_the_prompt(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(harness, prompt="a red circle", lora="green", lora_weight=0.6)
    assert executor.submitted[0].params.prompt == "a red circle <lora:green:0.6>"
    assert "a red circle <lora:green:0.6>" in contents(harness.standin, handle)[-1]  # the infotext shows it


async def test_lora_weight_defaults_to_one_and_the_name_is_forgiven_its_case(
    harness: Harness, executor: FakeExecutor
) -> None:
    await imagine(harness, prompt="a red circle", lora="GREEN")
    assert executor.submitted[0].params.prompt == "a red circle <lora:green:1>"


async def test_a_second_lora_comes_from_a_tag_in_the_prompt(harness: Harness, executor: FakeExecutor) -> None:
    await imagine(harness, prompt="a cat <lora:add-detail:0.5>", lora="green")
    assert executor.submitted[0].params.prompt == "a cat <lora:add-detail:0.5> <lora:green:1>"


async def test_lora_option_replaces_a_tag_for_the_same_lora(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(harness, prompt="a cat <lora:green:0.3>, sitting", lora="green", lora_weight=0.8)
    assert executor.submitted[0].params.prompt == "a cat , sitting <lora:green:0.8>"
    assert "replaced `<lora:green:0.3>`" in contents(harness.standin, handle)[-1]


async def test_lora_tag_goes_after_the_prompt_flags_are_read(harness: Harness, executor: FakeExecutor) -> None:
    await imagine(harness, prompt="a cat --no dogs --seed 5", lora="green")
    params = executor.submitted[0].params
    assert (params.prompt, params.negative_prompt, params.seed) == ("a cat <lora:green:1>", "dogs", 5)


async def test_unknown_lora_is_refused_ephemerally_with_the_closest_names(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await imagine(harness, prompt="a red circle", lora="gren")
    assert_ephemeral(harness.standin, handle, "Unknown LoRA 'gren'", "Closest: green")
    assert executor.submitted == []


async def test_unknown_lora_tag_in_the_prompt_is_refused_before_queueing(
    harness: Harness, executor: FakeExecutor
) -> None:
    handle = await imagine(harness, prompt="a cat", negative_prompt="blurry <lora:more-detials:-1>")
    assert_ephemeral(harness.standin, handle, "Unknown LoRA 'more-detials'", "more-details")
    assert executor.submitted == []


async def test_lora_weight_without_a_lora_is_reported(harness: Harness, executor: FakeExecutor) -> None:
    handle = await imagine(harness, prompt="a cat", lora_weight=0.5)
    assert executor.submitted[0].params.prompt == "a cat"
    assert "Ignored `lora_weight`" in contents(harness.standin, handle)[-1]


# -- /lora list -------------------------------------------------------------------------------------------------


async def lora_list(harness: Harness, **options: Any) -> tuple[InteractionHandle, dict[str, Any]]:
    handle = await harness.standin.slash("lora list", ALICE, **options)
    await harness.settle(handle)
    [embed] = assert_deferred_ephemeral(harness.standin, handle)["embeds"]
    return handle, embed


async def test_lora_list_shows_hashes_trigger_words_families_and_embeddings(harness: Harness) -> None:
    _, embed = await lora_list(harness)
    text = embed["description"]
    assert "**LoRAs** (4)" in text
    assert "- `green` · `a1b2c3d4e5f6` · SD 1.x — triggers: `green`, `shape`" in text
    assert "- `anime-lineart` · `123456789abc` · SDXL — triggers: `lineart`, `monochrome`" in text
    assert "- `more-details` · hash unreadable" in text
    assert "**Embeddings** (1)" in text
    assert "- `EasyNegative` · 8 vectors" in text
    assert "- `bad-hands-xl` — refused: it is an SDXL embedding" in text
    assert "footer" not in embed  # everything fit


async def test_lora_list_search_matches_names_and_trigger_words(harness: Harness) -> None:
    _, embed = await lora_list(harness, search="lineart")
    assert "`anime-lineart`" in embed["description"] and "`green`" not in embed["description"]
    assert "**Embeddings** (0): none" in embed["description"]
    assert "lineart" in embed["title"]


async def test_long_lora_list_is_paged_within_the_embed_limit(harness: Harness, networks: FakeNetworks) -> None:
    words = tuple(f"a rather long trigger phrase number {i}" for i in range(5))
    networks.loras_ = [FakeLora(f"style-{i:03d}", f"{i:012x}", words) for i in range(120)]
    networks.embeddings_ = [FakeEmbedding(f"emb-{i}", 2) for i in range(30)]
    _, first = await lora_list(harness)
    assert len(first["description"]) <= 4096
    shown = first["description"].count("\n- ")
    pages = int(first["footer"]["text"].split(" of ")[1].split(" ")[0])
    assert pages > 2
    assert first["footer"]["text"].startswith(f"Page 1 of {pages} · {150 - shown} more on other pages")
    assert "/lora list page:2" in first["footer"]["text"]

    _, second = await lora_list(harness, page=2)
    assert second["description"].startswith("**LoRAs** (120)") and "(continued)" in second["description"]
    _, last = await lora_list(harness, page=999)  # past the end: the last page
    assert "`emb-29` · 2 vectors" in last["description"]
    assert last["footer"]["text"].startswith(f"Page {pages} of {pages}")


# -- /model refresh -------------------------------------------------------------------------------------------


async def test_model_refresh_rescans_models_loras_and_embeddings(
    harness: Harness, registry: FakeRegistry, networks: FakeNetworks
) -> None:
    registry.rescanned = registry.entries_[:2]
    networks.rescanned = ([FakeLora("green")], [FakeEmbedding("EasyNegative", 8), FakeEmbedding("x", None, "bad")])
    handle = await harness.standin.slash("model refresh", SERVER_ADMIN)
    await harness.settle(handle)
    message = assert_deferred_ephemeral(harness.standin, handle)
    assert "2 usable model(s), 0 refused; 1 LoRA(s), 0 refused; 1 embedding(s), 1 refused" in message["content"]
    assert networks.refreshes == 1


# -- the engine's own catalog behind the bot ----------------------------------------------------------------------


async def test_the_engines_catalog_lists_the_builtin_lora_and_feeds_imagine(
    standin: Standin, executor: FakeExecutor, registry: FakeRegistry, tmp_path: Path
) -> None:
    library = LoraLibrary([tmp_path / "Lora", builtin.SHAPES_LORAS_DIR], HashCache(tmp_path / "hashes.json"))
    networks = ExtraNetworks(library, EmbeddingDB([tmp_path / "embeddings"]))
    rig = Harness(standin, make_settings(standin, tmp_path / "data"), executor, registry, networks)
    await rig.start()
    try:
        _, embed = await lora_list(rig)
        digest = addnet_hash(builtin.SHAPES_LORAS_DIR / "green.safetensors")[:12]
        assert f"- `green` · `{digest}`" in embed["description"]
        assert "**Embeddings** (0): none" in embed["description"]
        await imagine(rig, prompt="a red circle", lora="green", lora_weight=0.5)
        assert executor.submitted[0].params.prompt == "a red circle <lora:green:0.5>"
    finally:
        await rig.stop()
        networks.close()
    assert not [problem for recorded in standin.requests for problem in validation_errors(recorded)]
