"""Textual-inversion embeddings on builtin:tiny (text-encoder width 32): reading files, finding names in the token
stream as A1111 does, substituting vectors after the token-embedding lookup, and `TI hashes`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.conditioning import PLACEHOLDER_TOKEN, Conditioner, tokenize_chunks
from engine.embeddings import EmbeddingDB, EmbeddingFileError, RefusedEmbedding, load_embedding, ti_hashes
from engine.errors import InvalidParamsError
from engine.pipeline import DiffusersEngine, LoadedModel
from tests.engine.conftest import tiny_params

WIDTH = 32  # builtin:tiny's text encoder hidden size


def vectors(count: int, width: int = WIDTH, seed: int = 0) -> torch.Tensor:
    return torch.randn((count, width), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tiny(engine: DiffusersEngine) -> LoadedModel:
    return engine.load("builtin:tiny")


def conditioner(tiny: LoadedModel, folder: Path) -> Conditioner:
    return Conditioner(tiny.pipe.tokenizer, tiny.pipe.text_encoder, "cpu", embeddings=EmbeddingDB([folder]))


def token_ids(tiny: LoadedModel, word: str) -> list[int]:
    return [int(i) for i in tiny.pipe.tokenizer(word, add_special_tokens=False)["input_ids"]]


# reading files


def test_reads_kohya_safetensors_emb_params(tmp_path: Path) -> None:
    save_file({"emb_params": vectors(3)}, tmp_path / "style.safetensors")
    embedding = load_embedding(tmp_path / "style.safetensors")
    assert (embedding.name, embedding.count, embedding.width) == ("style", 3, WIDTH)


def test_reads_a1111_pt_string_to_param(tmp_path: Path) -> None:
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors(2)}, "name": "x", "step": 5},
               tmp_path / "negative.pt")  # fmt: skip
    embedding = load_embedding(tmp_path / "negative.pt")
    assert (embedding.name, embedding.count) == ("negative", 2)
    assert torch.equal(embedding.vectors, vectors(2))


def test_reads_a_diffusers_bin_with_one_1d_tensor(tmp_path: Path) -> None:
    torch.save({"<concept>": vectors(1)[0]}, tmp_path / "concept.bin")
    assert load_embedding(tmp_path / "concept.bin").vectors.shape == (1, WIDTH)


def test_refuses_a_pickle_that_needs_more_than_weights(tmp_path: Path) -> None:
    # Old A1111 files hold an nn.ParameterDict: a module, which weights_only unpickling refuses to build.
    torch.save({"string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vectors(1))})}, tmp_path / "a.pt")
    with pytest.raises(EmbeddingFileError, match=r"weights_only=True.*safetensors"):
        load_embedding(tmp_path / "a.pt")


def test_reads_an_sdxl_file_as_one_part_per_text_encoder(tmp_path: Path) -> None:
    save_file({"clip_l": vectors(2, 768), "clip_g": vectors(2, 1280)}, tmp_path / "xl.safetensors")
    embedding = load_embedding(tmp_path / "xl.safetensors")
    assert (embedding.family, embedding.count, embedding.width) == ("sdxl", 2, 2048)
    assert embedding.part("clip_g").shape == (2, 1280)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"clip_l": vectors(1, 768), "clip_g": vectors(2, 1280)}, "different numbers of vectors"),
        ({"string_to_param": {"*": vectors(1), "+": vectors(1)}}, "exactly one"),
        ({"a": vectors(1), "b": vectors(1)}, "not a textual-inversion embedding"),
        ({"emb_params": vectors(76)}, "at most 75"),
    ],
)
def test_refuses_files_that_are_not_embeddings(tmp_path: Path, content: dict[str, Any], reason: str) -> None:
    torch.save(content, tmp_path / "bad.pt")
    with pytest.raises(EmbeddingFileError, match=reason):
        load_embedding(tmp_path / "bad.pt")


def test_db_lists_usable_and_refused_files(tmp_path: Path) -> None:
    save_file({"emb_params": vectors(1)}, tmp_path / "good.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"garbage that is not safetensors")
    (tmp_path / "notes.txt").write_text("ignored")
    db = EmbeddingDB([tmp_path, tmp_path / "missing"])
    assert db.names() == ["good"]
    assert [r.name for r in db.refused()] == ["broken"]


def test_db_picks_up_new_files_without_a_restart(tmp_path: Path) -> None:
    db = EmbeddingDB([tmp_path])
    assert db.names() == []
    save_file({"emb_params": vectors(1)}, tmp_path / "late.safetensors")
    os.utime(tmp_path, (1, 1))  # the folder's mtime moves when a file is added; make sure it differs here
    assert db.refresh_if_changed()
    assert db.names() == ["late"]


# finding names in the token stream


def test_name_is_found_lower_cased_at_any_position(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(2)}, tmp_path / "EasyNegative.safetensors")
    lookup = EmbeddingDB([tmp_path]).lookup(tiny.pipe.tokenizer, WIDTH)
    for text in ("EasyNegative", "a photo, easynegative, blurry", "blurry EASYNEGATIVE"):
        [chunk], count = tokenize_chunks(tiny.pipe.tokenizer, text, lookup)
        assert [emb.name for _, emb in chunk.fixes] == ["EasyNegative"], text
        offset = chunk.fixes[0][0]
        assert chunk.tokens[offset + 1 : offset + 3] == [PLACEHOLDER_TOKEN] * 2
    assert count == 2 + 1  # "blurry" + two vectors: placeholders count as tokens


def test_placeholders_carry_the_emphasis_weight(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(2)}, tmp_path / "style.safetensors")
    lookup = EmbeddingDB([tmp_path]).lookup(tiny.pipe.tokenizer, WIDTH)
    [chunk], _ = tokenize_chunks(tiny.pipe.tokenizer, "a (style:1.3) cat", lookup)
    offset = chunk.fixes[0][0]
    assert chunk.multipliers[offset + 1 : offset + 3] == [1.3, 1.3]


def test_an_embedding_never_straddles_two_chunks(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(4)}, tmp_path / "style.safetensors")
    lookup = EmbeddingDB([tmp_path]).lookup(tiny.pipe.tokenizer, WIDTH)
    text = " ".join(["cat"] * 73) + " style"
    chunks, count = tokenize_chunks(tiny.pipe.tokenizer, text, lookup)
    assert len(chunks) == 2
    assert chunks[0].fixes == []
    assert [(offset, emb.name) for offset, emb in chunks[1].fixes] == [(0, "style")]
    assert chunks[1].tokens[1:5] == [PLACEHOLDER_TOKEN] * 4
    assert count == 75 + 4


def test_comma_backtrack_moves_an_embedding_with_its_words(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(2)}, tmp_path / "style.safetensors")
    lookup = EmbeddingDB([tmp_path]).lookup(tiny.pipe.tokenizer, WIDTH)
    text = " ".join(["cat"] * 70) + ", style dog dog dog dog"
    chunks, _ = tokenize_chunks(tiny.pipe.tokenizer, text, lookup)
    assert len(chunks) == 2
    assert chunks[0].fixes == []
    [(offset, embedding)] = chunks[1].fixes
    assert chunks[1].tokens[offset + 1 : offset + 3] == [PLACEHOLDER_TOKEN] * 2
    assert embedding.name == "style"


# substitution


def test_vectors_replace_the_token_embedding_exactly(tiny: LoadedModel, tmp_path: Path) -> None:
    # An embedding holding the token embedding of "cat" must encode exactly as the word "cat" does.
    [cat] = token_ids(tiny, "cat")
    weight = tiny.pipe.text_encoder.get_input_embeddings().weight.detach()
    save_file({"emb_params": weight[cat : cat + 1].clone()}, tmp_path / "kitty.safetensors")
    c = conditioner(tiny, tmp_path)
    assert torch.equal(c.encode("a kitty on a mat"), c.encode("a cat on a mat"))
    assert not torch.equal(c.encode("a kitty on a mat"), tiny.conditioner.encode("a kitty on a mat"))


def test_embedding_with_clip_skip_encodes_like_the_word(tiny: LoadedModel, tmp_path: Path) -> None:
    [cat] = token_ids(tiny, "cat")
    weight = tiny.pipe.text_encoder.get_input_embeddings().weight.detach()
    save_file({"emb_params": weight[cat : cat + 1].clone()}, tmp_path / "kitty.safetensors")
    c = conditioner(tiny, tmp_path)
    assert torch.equal(c.encode("kitty", clip_skip=2), c.encode("cat", clip_skip=2))


def test_the_hook_is_removed_after_encoding(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(1)}, tmp_path / "style.safetensors")
    conditioner(tiny, tmp_path).encode("style")
    assert not tiny.pipe.text_encoder.get_input_embeddings()._forward_hooks


def test_an_embedding_of_another_width_is_refused_clearly(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(1, 768)}, tmp_path / "sd15style.safetensors")
    with pytest.raises(InvalidParamsError, match=r"sd15style.*768 wide.*takes 32"):
        conditioner(tiny, tmp_path).encode("a sd15style cat")


def test_a_refused_file_named_in_the_prompt_is_refused_with_its_reason(tiny: LoadedModel, tmp_path: Path) -> None:
    torch.save({"string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vectors(1))})}, tmp_path / "old.pt")
    c = conditioner(tiny, tmp_path)
    with pytest.raises(InvalidParamsError, match=r"old\.pt.*weights_only"):
        c.encode("an old photo")
    assert c.encode("an older photo").shape == (1, 77, WIDTH)  # other words are fine


def test_refused_lookup_entries_are_marked(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(1, 768)}, tmp_path / "wide.safetensors")
    lookup = EmbeddingDB([tmp_path]).lookup(tiny.pipe.tokenizer, WIDTH)
    found = lookup.find(token_ids(tiny, "wide"), 0)
    assert found is not None and isinstance(found[0], RefusedEmbedding)


def test_a_new_file_invalidates_cached_conditioning(tiny: LoadedModel, tmp_path: Path) -> None:
    c = conditioner(tiny, tmp_path)
    before = c.encode("a zebra")
    save_file({"emb_params": vectors(1)}, tmp_path / "zebra.safetensors")
    os.utime(tmp_path, (2, 2))
    assert not torch.equal(c.encode("a zebra"), before)


# TI hashes


def test_ti_hashes_name_each_used_embedding_once_with_its_file_hash(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(1)}, tmp_path / "style.safetensors")
    save_file({"emb_params": vectors(2, seed=1)}, tmp_path / "EasyNegative.safetensors")
    save_file({"emb_params": vectors(1, seed=2)}, tmp_path / "unused.safetensors")
    c = conditioner(tiny, tmp_path)
    c.take_used()
    c.encode("a style cat, (style:1.2)")
    c.encode("easynegative, blurry")
    c.encode("a style cat, (style:1.2)")  # from the cache: still counted
    used = c.take_used()
    assert [e.name for e in used] == ["style", "EasyNegative"]
    digest = hashlib.sha256((tmp_path / "style.safetensors").read_bytes()).hexdigest()[:12]
    neg = hashlib.sha256((tmp_path / "EasyNegative.safetensors").read_bytes()).hexdigest()[:12]
    assert ti_hashes(used) == f"style: {digest}, EasyNegative: {neg}"
    assert c.take_used() == []
    assert ti_hashes([]) is None


def test_embeddings_used_reports_a_texts_embeddings(tiny: LoadedModel, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(1)}, tmp_path / "style.safetensors")
    c = conditioner(tiny, tmp_path)
    assert [e.name for e in c.embeddings_used("a style cat")] == ["style"]
    assert c.embeddings_used("a stylish cat") == []


def test_ti_hashes_drop_colons_and_commas_from_names(tmp_path: Path) -> None:
    save_file({"emb_params": vectors(1)}, tmp_path / "a,b:c.safetensors")
    [embedding] = [load_embedding(tmp_path / "a,b:c.safetensors")]
    assert ti_hashes([embedding]) == f"abc: {embedding.short_hash}"


# through the engine's denoising loop


def test_an_embedding_changes_the_image(engine: DiffusersEngine, tmp_path: Path) -> None:
    base = np.asarray(engine.generate(tiny_params(prompt="a style lighthouse"))[0].image)
    save_file({"emb_params": vectors(2) * 3}, tmp_path / "style.safetensors")
    other = DiffusersEngine(engine.registry, "cpu", embeddings=EmbeddingDB([tmp_path]))
    [result] = other.generate(tiny_params(prompt="a style lighthouse"))
    assert not np.array_equal(base, np.asarray(result.image))
    assert 'TI hashes: "style: ' in result.infotext
