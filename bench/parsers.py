"""Parse time against input length for every parser at the edge, up to the limits, on the inputs that cost most.

    python -m bench.parsers [--out bench/parsers.json]

Each row is one parser on one family of inputs (plain prompts, and the crafted shapes that made the old regexes
and parsers quadratic), timed at growing lengths up to the limit: median milliseconds of 5 runs, and the growth
from a quarter of the limit to the limit (about 4 for a linear parser, 16 for a quadratic one). A refusal with
Easel's own error counts as parsed. Then the image-metadata reader on crafted files: time and the most memory it
holds (tracemalloc) beyond the file. The goal (issue 11): every input within the limits in at most 50 ms, and
the metadata reader within a few MB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import struct
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from engine.errors import EaselError
from engine.images import PNG_SIGNATURE, read_infotext
from engine.infotext import RE_PARAM, find_params, looks_like_infotext
from engine.params import MAX_PROMPT_CHARS, Limits, build_params
from engine.paste import MAX_PASTE_CHARS, read_pasted
from engine.plan import make_plan
from engine.prompts import parse_prompt_attention, read_loras, split_and
from engine.prompts.editing import get_learned_conditioning_prompt_schedules
from engine.prompts.extra_networks import parse_extra_networks
from engine.prompts.flags import read_flags
from engine.prompts.scan import RE_BREAK, RE_EXTRA_NET, RE_WEIGHT, split_break, split_weight

STEPS = 150  # the most steps a job may have: prompt editing renders a text per step


def fill(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def job_path(prompt: str) -> None:
    """What /imagine does with a prompt before queueing: flags, LoRA tags, params, the plan (schedules, AND)."""
    flags = read_flags(prompt, base_pixels=512 * 512, max_pixels=1024 * 1024)
    params = build_params({"prompt": flags.prompt, "steps": STEPS}, model="m", limits=Limits())
    make_plan(params)


PROMPT_FAMILIES: dict[str, Callable[[int], str]] = {
    "plain words": lambda n: fill("a red fox in the snow, ", n),
    "emphasis (a:1.2)": lambda n: fill("(fox:1.2) ", n),
    "nested to the limit": lambda n: fill("(" * 32 + "a" + ")" * 32, n),
    "unclosed (a": lambda n: fill("(a", n),
    "editing [a:b:0.5]": lambda n: fill("[cat:dog:0.5] ", n),
    "alternation [a|b]": lambda n: fill("[cat|dog] ", n),
    "lora tags": lambda n: fill("<lora:x:0.5> ", n),
    "unclosed <lora:": lambda n: fill("<lora:", n),
    "one long word": lambda n: fill("a", n),
    "spaces then BREAKx": lambda n: " " * (n - 6) + "BREAKx",
    "AND parts": lambda n: fill("a cat AND a dog :1.5 ", n),
    "spaces in an AND part": lambda n: "a" + " " * (n - 3) + ":x",
    "colons and digits": lambda n: fill(":1.", n),
    "backslashes": lambda n: fill("\\(", n),
    "colons alone": lambda n: fill(":", n),
    "escaped quotes": lambda n: fill('\\"', n),
    "flags": lambda n: fill("--x ", n),
}

PARSERS: dict[str, Callable[[str], object]] = {
    "attention": parse_prompt_attention,
    "prompt editing": lambda text: get_learned_conditioning_prompt_schedules([text], STEPS),
    "AND split": split_and,
    "extra networks": read_loras,
    "inline flags": lambda text: read_flags(text, base_pixels=512 * 512, max_pixels=1024 * 1024),
    "whole job (flags..plan)": job_path,
}


def line(n: int) -> str:
    return fill("Steps: 20, ", n)


PASTE_FAMILIES: dict[str, Callable[[int], str]] = {
    "A1111 block": lambda n: fill("a fox, ", n // 2 - 24) + "\nNegative prompt: blurry\n" + line(n // 2),
    "one long key run": lambda n: "p\n" + fill("a", n - 2),
    "unclosed quotes": lambda n: "p\n" + fill('k: "a, ', n - 2),
    "many lines": lambda n: fill("a\n", n),
    "many pairs": lambda n: "p\n" + fill("K: v, ", n - 2),
}

PASTE_PARSERS: dict[str, Callable[[str], object]] = {
    "paste": read_pasted,
    "looks like a paste": looks_like_infotext,
}


# A1111's regexes against Easel's linear scanners, on the input that makes each regex quadratic.
REFERENCE: dict[str, tuple[Callable[[str], object], Callable[[str], object], Callable[[int], str], int]] = {
    "parameter line": (RE_PARAM.findall, find_params, lambda n: fill("a", n), MAX_PASTE_CHARS),
    "LoRA tags": (
        lambda t: RE_EXTRA_NET.sub("", t),
        parse_extra_networks,
        lambda n: fill("<lora:", n),
        MAX_PROMPT_CHARS,
    ),
    "BREAK": (RE_BREAK.split, split_break, PROMPT_FAMILIES["spaces then BREAKx"], MAX_PROMPT_CHARS),
    "AND weight": (RE_WEIGHT.search, split_weight, PROMPT_FAMILIES["spaces in an AND part"], MAX_PROMPT_CHARS),
}


def median_ms(fn: Callable[[str], object], text: str, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        with contextlib.suppress(EaselError):
            fn(text)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def curve(fn: Callable[[str], object], family: Callable[[int], str], limit: int) -> dict[str, float]:
    lengths = [limit // 4, limit // 2, limit]
    times = {n: median_ms(fn, family(n)) for n in lengths}
    return {**{f"{n} ms": times[n] for n in lengths}, "growth x4 length": times[limit] / max(times[limit // 4], 1e-3)}


def crafted_files() -> dict[str, bytes]:
    """Small files whose metadata would make a naive reader allocate or inflate far beyond their size."""
    # EXIF whose IFD0 claims 2^30 LONG values (piexif would build a format string of that many characters).
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHII", 0x0111, 4, 1 << 30, 26)
    exif = b"Exif\x00\x00" + tiff + b"\x00" * 8
    jpeg = b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + b"\xff\xd9"
    webp_body = b"WEBP" + b"EXIF" + struct.pack("<I", len(exif)) + exif
    webp = b"RIFF" + struct.pack("<I", len(webp_body)) + webp_body
    # A PNG with 2000 zTXt `parameters` chunks, each 1 KiB inflating to 1 MiB.
    bomb = zlib.compress(b"a" * (1 << 20), 9)
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, format="PNG")
    head = image.getvalue()[: len(PNG_SIGNATURE) + 25]  # signature + IHDR
    chunk_body = b"parameters\x00\x00" + bomb
    chunk = (
        struct.pack(">I", len(chunk_body)) + b"zTXt" + chunk_body + struct.pack(">I", zlib.crc32(b"zTXt" + chunk_body))
    )
    png = head + chunk * 2000 + image.getvalue()[len(head) :]
    return {"JPEG, EXIF count 2^30": jpeg, "WebP, EXIF count 2^30": webp, "PNG, 2000 zTXt bombs": png}


def metadata() -> dict[str, dict[str, float]]:
    out = {}
    for name, data in crafted_files().items():
        tracemalloc.start()
        started = time.perf_counter()
        read_infotext(data)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[name] = {"file KiB": len(data) / 1024, "ms": seconds * 1000, "peak MiB": peak / (1 << 20)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/parsers.json"))
    args = parser.parse_args()
    job_path("warm (up:1.1) [a:b:2] <lora:x:1> --ar 3:2")  # imports and caches out of the first timing
    results: dict[str, Any] = {"prompt limit": MAX_PROMPT_CHARS, "paste limit": MAX_PASTE_CHARS, "steps": STEPS}
    worst = 0.0
    for pname, fn in PARSERS.items():
        for fname, family in PROMPT_FAMILIES.items():
            row = curve(fn, family, MAX_PROMPT_CHARS)
            results[f"{pname} / {fname}"] = row
            worst = max(worst, row[f"{MAX_PROMPT_CHARS} ms"])
    for pname, fn in PASTE_PARSERS.items():
        for fname, family in PASTE_FAMILIES.items():
            row = curve(fn, family, MAX_PASTE_CHARS)
            results[f"{pname} / {fname}"] = row
            worst = max(worst, row[f"{MAX_PASTE_CHARS} ms"])
    for name, (regex, scanner, family, limit) in REFERENCE.items():
        text = family(limit)
        before, after = median_ms(regex, text, 3), median_ms(scanner, text, 3)
        results[f"A1111's regex vs Easel / {name}"] = {
            "chars": float(limit),
            "regex ms": before,
            "Easel ms": after,
            "regex / Easel": before / max(after, 1e-3),
        }
    results["image metadata"] = metadata()
    results["worst ms at the limit"] = worst
    for key, value in results.items():
        if isinstance(value, dict):
            cells = "  ".join(f"{k} {v:8.3f}" if not isinstance(v, dict) else f"{k}: {v}" for k, v in value.items())
            print(f"{key:55} {cells}")
        else:
            print(f"{key:55} {value}")
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
