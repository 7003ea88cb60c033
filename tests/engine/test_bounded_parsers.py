"""Every parser at the edge is linear and bounded: the linear scanners find exactly what A1111's regexes find; crafted
inputs at the length limits parse within the issue's 50 ms; fuzzed input only ever raises Easel's own errors;
crafted image metadata never makes the reader hold more than a few MB.

Hypothesis runs derandomized with a fixed number of examples, so the suite is deterministic and takes seconds.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import piexif
import piexif.helper
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.errors import EaselError, InvalidParamsError
from engine.images import PNG_SIGNATURE, check_upload, encode_jpeg, encode_png, encode_webp, read_infotext
from engine.infotext import RE_PARAM, find_params, looks_like_infotext, parse_infotext
from engine.params import MAX_PROMPT_CHARS, Limits, build_params
from engine.paste import MAX_PASTE_CHARS, read_pasted
from engine.plan import make_plan
from engine.prompts import parse_prompt_attention, read_loras, split_and
from engine.prompts.editing import get_learned_conditioning_prompt_schedules
from engine.prompts.extra_networks import parse_extra_networks
from engine.prompts.flags import read_flags
from engine.prompts.scan import RE_BREAK, RE_EXTRA_NET, RE_WEIGHT, find_extra_networks, split_break, split_weight

FUZZ = settings(
    derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Characters every parser gives a meaning to, whitespace that is not a space, letters \w takes beyond ASCII,
# digits \d takes beyond ASCII, and tokens that start constructs.
_CHARS = "ab_Z9 \t\n\r\x0b\x1c\u00a0\u2028é٣:,;\"'\\()[]{}<>|=-+./"
_TOKENS = ["BREAK", "AND", "Steps", "Negative prompt:", ":1.5", ": -2.", "<lora:", ">", "\\", '"', "--ar 2:3", "e9"]
texts = st.lists(st.one_of(st.text(alphabet=_CHARS, max_size=6), st.sampled_from(_TOKENS)), max_size=40).map("".join)


@FUZZ
@given(texts)
def test_the_parameter_scanner_finds_what_a1111s_regex_finds(line: str) -> None:
    line = line.replace("\n", " ")  # a last line has no newline
    assert find_params(line) == RE_PARAM.findall(line)


@FUZZ
@given(texts)
def test_the_break_scanner_splits_where_a1111s_regex_splits(text: str) -> None:
    assert split_break(text) == RE_BREAK.split(text)


@FUZZ
@given(texts)
def test_the_tag_scanner_finds_what_a1111s_regex_finds(text: str) -> None:
    expected = [(m.start(), m.end(), m.group(1), m.group(2)) for m in RE_EXTRA_NET.finditer(text)]
    assert list(find_extra_networks(text)) == expected
    assert parse_extra_networks(text)[0] == RE_EXTRA_NET.sub("", text)


@FUZZ
@given(texts)
def test_the_weight_scanner_splits_an_and_part_as_a1111s_regex(part: str) -> None:
    match = RE_WEIGHT.search(part)
    assert match is not None
    assert split_weight(part) == match.groups()


def _median_ms(fn: Callable[[], object]) -> float:
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        with contextlib.suppress(EaselError):
            fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def fill(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


# The inputs that made the old regexes and parsers quadratic (or worse), at the prompt length limit.
WORST_PROMPTS = {
    "nested brackets": fill("(" * 32 + "a" + ")" * 32, MAX_PROMPT_CHARS),
    "unclosed brackets": fill("(a", MAX_PROMPT_CHARS),
    "unclosed LoRA tags": fill("<lora:", MAX_PROMPT_CHARS),
    "spaces before a BREAK that is not one": " " * (MAX_PROMPT_CHARS - 6) + "BREAKx",
    "spaces in an AND part": "a" + " " * (MAX_PROMPT_CHARS - 3) + ":x",
    "prompt editing": fill("[cat:dog:0.5] ", MAX_PROMPT_CHARS // 2),
    "alternation": fill("[cat|dog] ", 990),
    "colons and digits": fill(":1.", MAX_PROMPT_CHARS),
}


def job_path(prompt: str) -> None:
    flags = read_flags(prompt, base_pixels=512 * 512, max_pixels=1024 * 1024)
    params = build_params({"prompt": flags.prompt, "steps": 150}, model="m", limits=Limits())
    make_plan(params)
    for _, text in make_plan(params).passes[0].conditioning.parts[0].schedule[:3]:
        parse_prompt_attention(text)


@pytest.mark.parametrize("name", WORST_PROMPTS)
def test_a_crafted_prompt_at_the_length_limit_is_planned_within_50_ms(name: str) -> None:
    assert _median_ms(lambda: job_path(WORST_PROMPTS[name])) <= 50


@pytest.mark.parametrize(
    "text",
    [
        "p\n" + fill("a", MAX_PASTE_CHARS - 2),  # one run of key characters: the old findall retried it everywhere
        "p\n" + fill('k: "a, ', MAX_PASTE_CHARS - 2),
        "p\n" + fill("Steps: 20, ", MAX_PASTE_CHARS - 2),
        fill("a\n", MAX_PASTE_CHARS),
    ],
    ids=["key run", "unclosed quotes", "many pairs", "many lines"],
)
def test_a_crafted_paste_at_the_length_limit_is_read_within_50_ms(text: str) -> None:
    assert _median_ms(lambda: (looks_like_infotext(text), read_pasted(text))) <= 50


def test_a_paste_over_the_limit_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(InvalidParamsError, match="the limit is 12,000"):
        read_pasted("a" * (MAX_PASTE_CHARS + 1))


def _only_easel_errors(fn: Callable[[], object]) -> None:
    try:
        fn()
    except EaselError as err:
        assert str(err)  # a message for the user...
        assert len(str(err)) <= 1000  # ...that fits a Discord reply, however long the value it quotes


@FUZZ
@given(texts)
def test_fuzzed_prompts_raise_only_easels_errors(prompt: str) -> None:
    for parse in (
        lambda: parse_prompt_attention(prompt),
        lambda: get_learned_conditioning_prompt_schedules([prompt], 20, 10),
        lambda: split_and(prompt),
        lambda: read_loras(prompt),
        lambda: read_flags(prompt, base_pixels=512 * 512, max_pixels=1024 * 1024),
        lambda: job_path(prompt),
    ):
        _only_easel_errors(parse)


_FIELDS = ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model", "Model hash", "Clip skip",
           "Denoising strength", "Hires upscale", "Hires steps", "Hires upscaler", "Variation seed", "RNG", "VAE",
           "Variation seed strength", "Hires resize", "First pass size", "Version", "ENSD", "Lora hashes"]  # fmt: skip
_VALUES = st.one_of(
    texts, st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True).map(str),
    st.sampled_from(["512x768", "0x0", "99999x1", "DPM++ 2M", "Euler a", "Karras", "nan", "inf", "-1", '"a, b"',
                     "0x8", "1x" + "9" * 4301, "9" * 5000, "1" + "0" * 30, "12", "13", "a\ud800b", "x" * 2500]),
)  # fmt: skip
pastes = st.tuples(texts, texts, st.lists(st.tuples(st.sampled_from(_FIELDS), _VALUES), max_size=8)).map(
    lambda t: f"{t[0]}\nNegative prompt: {t[1]}\n" + ", ".join(f"{k}: {v}" for k, v in t[2])
)


@FUZZ
@given(st.one_of(pastes, texts))
def test_fuzzed_pastes_raise_only_easels_errors(text: str) -> None:
    def paste_and_build() -> None:
        fields = parse_infotext(text)
        assert isinstance(fields["Prompt"], str)
        paste = read_pasted(text)
        build_params(paste.options, model="m", limits=Limits())

    _only_easel_errors(paste_and_build)


_OPTION = st.sampled_from(
    ["steps", "sampler", "schedule", "cfg_scale", "seed", "width", "height", "batch_size", "subseed",
     "subseed_strength", "clip_skip", "rng", "ensd", "denoising_strength", "enable_hr", "hr_scale", "hr_steps",
     "hr_upscaler", "hr_resize_x", "hr_resize_y", "negative_prompt", "vae", "init_image"]
)  # fmt: skip
_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), texts,
    st.sampled_from(["20", "7.5", "1e400", "-0", "0x10", "Euler a", "DPM++ 2M SDE", "Karras", "nan", " 64 "]),
)  # fmt: skip


@FUZZ
@given(st.dictionaries(_OPTION, _ANY, max_size=8), texts)
def test_fuzzed_options_are_built_or_refused_with_easels_errors(options: dict[str, Any], prompt: str) -> None:
    def build() -> None:
        params = build_params({**options, "prompt": prompt}, model="m", limits=Limits())
        make_plan(params)

    _only_easel_errors(build)


def _tiny_image() -> Image.Image:
    return Image.new("RGB", (16, 8), (200, 30, 30))


_IMAGES = [encode_png(_tiny_image(), "a fox\nSteps: 5"), encode_jpeg(_tiny_image(), "a fox\nSteps: 5"),
           encode_webp(_tiny_image(), "a fox\nSteps: 5")]  # fmt: skip


@FUZZ
@given(st.sampled_from(range(len(_IMAGES))), st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=8))))
def test_damaged_image_files_are_read_or_refused_with_easels_errors(which: int, edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(_IMAGES[which])
    for offset, replacement in edits:
        pos = offset % len(data)
        data[pos : pos + len(replacement)] = replacement
    info = read_infotext(bytes(data))
    assert info is None or isinstance(info, str)
    _only_easel_errors(lambda: check_upload(bytes(data), max_bytes=1 << 20, max_pixels=1 << 20))


def _exif_claiming(count: int) -> bytes:
    """EXIF whose IFD0 holds one LONG entry claiming `count` values (piexif would unpack them all)."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x0111, 4, count, 26) + b"\x00" * 4
    return b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + b"\x00" * 8


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted() -> dict[str, bytes]:
    exif = _exif_claiming(1 << 30)
    jpeg = b"\xff\xd8\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + b"\xff\xd9"
    webp_body = b"WEBP" + b"EXIF" + struct.pack("<I", len(exif)) + exif
    webp = b"RIFF" + struct.pack("<I", len(webp_body)) + webp_body
    out = io.BytesIO()
    _tiny_image().save(out, format="PNG")
    head = out.getvalue()[: len(PNG_SIGNATURE) + 25]
    bomb = _png_chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"a" * (1 << 20), 9))
    png = head + bomb * 500 + out.getvalue()[len(head) :]
    return {"jpeg": jpeg, "webp": webp, "png": png}


@pytest.mark.parametrize("kind", ["jpeg", "webp", "png"])
def test_crafted_metadata_never_makes_the_reader_hold_more_than_a_few_mb(kind: str) -> None:
    data = crafted()[kind]
    tracemalloc.start()
    try:
        read_infotext(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_the_pngs_text_budget_is_shared_by_all_its_chunks_and_the_last_parameters_chunk_within_it_wins() -> None:
    out = io.BytesIO()
    _tiny_image().save(out, format="PNG")
    head, tail = out.getvalue()[: len(PNG_SIGNATURE) + 25], out.getvalue()[len(PNG_SIGNATURE) + 25 :]
    small = _png_chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"from a small chunk"))
    big = _png_chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"b" * ((1 << 20) - 10)))
    assert read_infotext(head + small + tail) == "from a small chunk"
    # The second chunk inflates past what is left of the budget: it is dropped, the first one stays.
    assert read_infotext(head + small + big + tail) == "from a small chunk"


def test_the_exif_reader_still_finds_comments_written_either_way_round() -> None:
    for order in ("big", "little"):
        comment = piexif.helper.UserComment.dump("a fox\nSteps: 5", encoding="unicode")
        exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}})
        if order == "little":
            exif = _to_little_endian(comment)
        jpeg = b"\xff\xd8\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + b"\xff\xd9"
        assert read_infotext(jpeg) == "a fox\nSteps: 5"


def _to_little_endian(comment: bytes) -> bytes:
    """An `II` EXIF block with IFD0 -> Exif IFD -> UserComment, built by hand."""
    exif_ifd_at = 8 + 2 + 12 + 4
    comment_at = exif_ifd_at + 2 + 12 + 4
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, exif_ifd_at) + b"\x00" * 4
    exif_ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x9286, 7, len(comment), comment_at) + b"\x00" * 4
    return b"Exif\x00\x00" + b"II\x2a\x00" + struct.pack("<I", 8) + ifd0 + exif_ifd + comment
