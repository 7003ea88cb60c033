"""WD14 taggers: the preprocessing against a transcription of the reference code (tests/reference/wd14_tagger.py),
the thresholds, escaping and order on outputs the test chooses, the tagger folder's listing, and a `/describe` job
on a tiny random tagger exported to ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.catalog import ExtraNetworks
from engine.embeddings import EmbeddingDB
from engine.errors import InvalidParamsError
from engine.images import encode_png
from engine.loras import LoraLibrary
from engine.params import Limits
from engine.pipeline import DiffusersEngine
from engine.request import Catalog, DescribeAsk, Request, resolve
from engine.taggers.description import Description
from engine.taggers.files import TaggerLibrary, load_labels
from engine.taggers.run import TaggerModels
from engine.taggers.tags import describe, prepare, prompt_tag
from tests.reference import wd14_tagger as reference
from tests.taggers_fakes import CHARACTER_NAMES, GENERAL_NAMES, write_tagger


def _pictures() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 256, (30, 70, 3), dtype=np.uint8))
    tall = Image.fromarray(rng.integers(0, 256, (90, 41, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (50, 50, 4), dtype=np.uint8), "RGBA")
    palette = Image.fromarray(rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)).convert("P")
    palette.info["transparency"] = 0
    grey = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L")
    return {"wide": wide, "tall": tall, "transparent": rgba, "palette with transparency": palette, "grey": grey,
            "exact size": Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))}  # fmt: skip


@pytest.mark.parametrize("name", list(_pictures()))
def test_the_input_is_the_reference_codes(name: str) -> None:
    image = _pictures()[name]
    for side in (64, 448):
        np.testing.assert_array_equal(prepare(image, side), reference.onnx_input(image.copy(), side))


def test_a_transparent_image_is_on_white_and_the_pad_is_white() -> None:
    clear = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    pixels = prepare(clear, 20)
    assert pixels.shape == (1, 20, 20, 3) and pixels.dtype == np.float32 and (pixels == 255).all()
    red = prepare(Image.new("RGB", (10, 10), (255, 0, 0)), 10)
    assert red[0, 0, 0].tolist() == [0.0, 0.0, 255.0]  # BGR


LABELS_ROWS = (
    [{"name": n, "category": "9"} for n in ("general", "sensitive", "questionable", "explicit")]
    + [{"name": n, "category": "0"} for n in GENERAL_NAMES]
    + [{"name": n, "category": "4"} for n in CHARACTER_NAMES]
)


def test_tags_over_their_thresholds_by_confidence_as_the_reference_gives_them() -> None:
    from engine.taggers.tags import read_labels

    labels = read_labels(LABELS_ROWS)
    probs = np.random.default_rng(3).random(len(labels.names)).astype(np.float32)
    probs[4 + GENERAL_NAMES.index("hat_(object)")] = 0.99
    probs[4 + GENERAL_NAMES.index("^_^")] = 0.98
    probs[4 + len(GENERAL_NAMES) + CHARACTER_NAMES.index("saber_(fate)")] = 0.97
    found = describe(probs, labels, general=0.35, character=0.85)
    _, taglist, ratings, _characters, general = reference.get_tags(
        probs, labels.names, labels.ratings, labels.general, labels.character, 0.35, 0.85
    )
    assert [tag for tag, _ in found.general][:2] == ["hat \\(object\\)", "^_^"]  # kaomoji keep their underscore
    assert [tag for tag, _ in found.character] == ["saber \\(fate\\)"]
    assert len(found.general) == len(general) and dict(found.ratings) == pytest.approx(ratings)
    # The reference writes general tags first and turns every `_` into a space; Easel puts characters first (as
    # prompts are written) and keeps kaomoji.
    assert set(found.prompt().split(", ")) == set(taglist.replace("^ ^", "^_^").split(", "))
    assert found.prompt().startswith("saber \\(fate\\), hat \\(object\\), ^_^")


def test_prompt_text_escapes_parentheses_and_keeps_kaomoji() -> None:
    assert prompt_tag("tag_(artist)") == "tag \\(artist\\)"
    assert prompt_tag("(o)_(o)") == "\\(o\\)_\\(o\\)" and prompt_tag("long_hair") == "long hair"


def test_suggestions_are_up_to_four_distinct_prompts_characters_first() -> None:
    found = Description(
        ratings=(("general", 0.9), ("sensitive", 0.1), ("questionable", 0.01), ("explicit", 0.0)),
        general=tuple((f"tag {i}", 0.9 - i / 100) for i in range(14)),
        character=(("hatsune miku", 0.95),),
        maybe=(("faint", 0.2),),
    )
    suggestions = found.suggestions()
    assert len(suggestions) == 4 and len(set(suggestions)) == 4
    assert all(s.startswith("hatsune miku, tag 0") for s in suggestions) and "faint" in suggestions[2]
    assert found.rating == "general"
    assert Description.from_dict(found.to_dict()) == found


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tagger")
    write_tagger(root / "wd-tiny-tagger")
    write_tagger(root / "wd-mismatched", extra_rows=3)
    (root / "no-tags").mkdir()
    (root / "no-tags" / "model.onnx").write_bytes(b"x")
    write_tagger(root / "garbled")
    (root / "garbled" / "model.onnx").write_bytes(b"not onnx")
    return root


def test_the_folder_lists_taggers_and_refuses_what_is_not_one(tagger_dir: Path) -> None:
    library = TaggerLibrary([tagger_dir])
    listed = {t.name: t for t in library.entries()}
    assert listed["wd-tiny-tagger"].label == "WD14 tagger, 64 px, 48 tags" and listed["wd-tiny-tagger"].side == 64
    assert "the model has 48 outputs for the 51 tags" in str(listed["wd-mismatched"].refused)
    assert "no selected_tags.csv" in str(listed["no-tags"].refused)
    assert "not an ONNX model" in str(listed["garbled"].refused)
    assert library.resolve(None).name == "wd-tiny-tagger" and library.resolve("WD-TINY-TAGGER").name == "wd-tiny-tagger"
    with pytest.raises(InvalidParamsError, match="refused"):
        library.resolve("garbled")
    with pytest.raises(InvalidParamsError, match="No tagger is installed"):
        TaggerLibrary([tagger_dir / "nothing"]).resolve(None)


def test_a_describe_job_runs_the_tagger_on_the_worker(engine: DiffusersEngine, tagger_dir: Path) -> None:
    library = TaggerLibrary([tagger_dir])
    picture = _pictures()["wide"]
    digest = engine.blobs.put(encode_png(picture, ""))
    catalog = Catalog(
        engine.registry, ExtraNetworks(LoraLibrary([], engine.registry.hashes), EmbeddingDB([]), taggers=library)
    )
    params = resolve(Request(init_image=digest, init_size=picture.size, describe=DescribeAsk(None, "0.3")), catalog,
                     Limits()).params  # fmt: skip
    assert (params.tagger, params.tag_threshold, params.is_describe) == ("wd-tiny-tagger", 0.3, True)
    real = engine.taggers
    engine.taggers = TaggerModels(library, "cpu")
    try:
        steps: list[tuple[int, int]] = []
        [raw] = engine.generate(params, on_step=lambda i, n: steps.append((i, n)))
    finally:
        engine.taggers = real
    assert raw.description is not None and steps == [(1, 1)]
    session, labels = TaggerModels(library, "cpu")._session(library.resolve(None))
    [probs] = session.run(None, {session.get_inputs()[0].name: prepare(picture, 64)})
    expected = describe(probs[0], labels, general=0.3, character=0.85, tagger="wd-tiny-tagger")
    assert raw.description == expected and raw.infotext == expected.prompt() and raw.image.size == picture.size
    assert engine.plan(params).cost() < 1  # a tagger's run is cheaper than one SD step


def test_labels_come_from_the_csv(tagger_dir: Path) -> None:
    labels = load_labels(tagger_dir / "wd-tiny-tagger")
    assert len(labels.ratings) == 4 and len(labels.character) == 4 and labels.names[4] == "tag_0"
