"""Easel's benchmark suite: every ratio measured in one process on the same inputs, printed as a table and written to
a JSON file.

    python -m bench [--models builtin:tiny,sd15-random] [--size 128] [--steps 8] [--compile] [--out bench/results.json]

For each model: Easel's job against a bare diffusers `pipe(...)` call (overhead); throughput of 8 jobs with cross-job
batching at 1, 2, 4 and 8 images against one job at a time; each speed option on against off; a model switch from
the cache against a cold load (diffusers folder and single file); LoRA apply and remove; live previews; PNG encoding
overlapped with the next job (executors run without previews, which are measured on their own). Then the event
loop's lag while 8 jobs run and while a 20 MiB upload is checked.
`sd15-random` is a full-size SD 1.5 with random weights, built once under data/bench/ (never committed); `--compile`
adds torch.compile (minutes on a CPU). The device, the versions and the thread count are recorded with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from PIL import Image

from bench.overhead import bare_call
from bench.timing import executor_run, in_turns, on_thread, run_jobs, timed
from engine.executor import GpuExecutor, encode_raw
from engine.loras import LoraLibrary
from engine.models.registry import ModelRegistry
from engine.models.single_file import export_single_file
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine, RawImage
from engine.speed import SpeedOptions

DATA = Path("data/bench")
SD15_RANDOM = "sd15-random"
PROMPTS = [f"a {c} {s} on a {b} background" for c, s, b in zip(
    ["red", "blue", "green", "white", "black", "yellow", "red", "blue"],
    ["circle", "square", "cross", "triangle", "circle", "square", "cross", "triangle"],
    ["blue", "red", "white", "green", "yellow", "black", "green", "white"], strict=True,
)]  # fmt: skip


def build_sd15_random(models: Path) -> None:
    """A full-size SD 1.5 (random weights) as a diffusers folder and as an A1111-layout single file."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from engine.models import configs

    folder, single = models / SD15_RANDOM, models / f"{SD15_RANDOM}-file.safetensors"
    if folder.exists() and single.exists():
        return

    def strip(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures", "model_type")}

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(configs.sd15_config_folder(DATA / "cache") / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**strip(configs.SD15_VAE)),
        text_encoder=CLIPTextModel(CLIPTextConfig(**strip(configs.SD15_TEXT_ENCODER))),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**strip(configs.SD15_UNET)),
        scheduler=PNDMScheduler.from_config(configs.SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    models.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(folder, safe_serialization=True)
    export_single_file(pipe, single)


def job(model: str, size: int, steps: int, n: int = 0, **changes: Any) -> GenerationParams:
    params = GenerationParams(
        prompt=PROMPTS[n % len(PROMPTS)], model=model, seed=1000 + n, steps=steps, sampler="Euler", width=size,
        height=size, cfg_scale=5.0, rng="CPU",
    )  # fmt: skip
    return params.replace(**changes)


async def throughput(registry: ModelRegistry, model: str, size: int, steps: int) -> dict[str, float]:
    """Images per second for 8 one-image jobs with batching at 1, 2, 4, 8 images, and the ratio to 1."""
    engine = DiffusersEngine(registry, "cpu")
    on_thread(lambda: engine.generate(job(model, size, steps)))
    rates = {}
    for limit in (1, 2, 4, 8):
        executor = GpuExecutor(
            engine, max_queued_per_user=10, max_queued_total=20, max_batch_images=limit, preview_interval=None
        )
        # The first job starts alone at once; the other seven wait and are batched behind it.
        seconds = await executor_run(executor, [job(model, size, steps, n) for n in range(8)], f"t{limit}-")
        rates[f"batch {limit}"] = 8 / seconds
    return {
        **{f"{k} img/s": v for k, v in rates.items()},
        **{f"{k} vs 1": v / rates["batch 1"] for k, v in rates.items()},
    }


async def overhead(registry: ModelRegistry, model: str, size: int, steps: int) -> dict[str, float]:
    """A whole job through the executor against a bare `pipe(...)` call on the same pipeline (see bench.overhead)."""
    engine = DiffusersEngine(registry, "cpu")
    params = job(model, size, steps)
    bare, ours = [], []
    for n in range(4):  # interleaved; the first round warms up both sides
        bare.append(on_thread(lambda: bare_call(engine, params)))
        executor = GpuExecutor(engine, max_queued_per_user=10, max_queued_total=10, preview_interval=None)
        ours.append(await executor_run(executor, [params], f"o{n}-"))
    b, o = statistics.median(bare[1:]), statistics.median(ours[1:])
    return {"bare s": b, "easel s": o, "easel / bare": o / b}


def speed_options(registry: ModelRegistry, model: str, size: int, steps: int, compile_too: bool) -> dict[str, float]:
    """Each option on against off: an engine loaded with the option beside a plain one, timed in turns (so that
    drift on a shared machine hits both alike), medians of 3."""
    params = job(model, size, steps)
    off = DiffusersEngine(registry, "cpu")
    options = {
        "channels_last": SpeedOptions(channels_last=True),
        "fuse_qkv": SpeedOptions(fuse_qkv=True),
        "bf16": SpeedOptions(dtype="bf16"),
    }
    if compile_too:
        options["compile unet"] = SpeedOptions(compile="unet", compile_sizes=((size, size),))
    result = {}
    for name, option in options.items():
        engine = DiffusersEngine(registry, "cpu", speed=option)
        on_thread(lambda engine=engine: engine.warm_up(model))  # type: ignore[misc]  # compiles, where it compiles
        base, seconds = in_turns(lambda: off.generate(params), lambda engine=engine: engine.generate(params))  # type: ignore[misc]
        result[f"{name}: off s"] = base
        result[f"{name}: on s"] = seconds
        result[f"{name}: on vs off"] = base / seconds
        del engine
        gc.collect()  # at most two full-size models resident
    return result


def model_switch(registry: ModelRegistry, models: list[str]) -> dict[str, float]:
    """A cold load (nothing cached) against switching back to a model that is still resident."""
    return on_thread(lambda: _model_switch(registry, models))


def _model_switch(registry: ModelRegistry, models: list[str]) -> dict[str, float]:
    result = {}
    for name in models:
        engine = DiffusersEngine(registry, "cpu", max_loaded=2)
        started = time.perf_counter()
        engine.load(name)
        cold = time.perf_counter() - started
        engine.load("builtin:tiny")
        started = time.perf_counter()
        engine.load(name)
        cached = time.perf_counter() - started
        result[f"{name} cold s"] = cold
        result[f"{name} cached s"] = cached
    return result


def lora_cost(registry: ModelRegistry, size: int, steps: int) -> dict[str, float]:
    """A job with the built-in shapes LoRA: the first (loads the file), the next (switches it on), and the job after
    that without it, against the plain job."""
    engine = DiffusersEngine(registry, "cpu", loras=LoraLibrary.with_builtins([], registry.hashes))
    plain = job("builtin:shapes", size, steps)
    with_lora = plain.replace(prompt=plain.prompt + " <lora:green:1>")
    base = timed(lambda: engine.generate(plain))
    started = time.perf_counter()
    on_thread(lambda: engine.generate(with_lora))
    first = time.perf_counter() - started
    switched = timed(lambda: (engine.generate(with_lora), engine.generate(plain))[0], repeats=2)
    return {"plain s": base, "first with LoRA s": first, "LoRA on + off (2 jobs) s": switched,
            "LoRA on + off vs 2 plain": switched / (2 * base)}  # fmt: skip


def preview_cost(registry: ModelRegistry, model: str, size: int, steps: int) -> dict[str, float]:
    engine = DiffusersEngine(registry, "cpu")
    params = job(model, size, steps)

    def render(step: int, total: int, source: Any) -> None:
        source.render()

    plain, rendered = in_turns(lambda: engine.generate(params), lambda: engine.generate(params, on_preview=render))
    return {"no previews s": plain, "a preview every step s": rendered, "every step vs none": rendered / plain}


async def encode_overlap(registry: ModelRegistry, model: str, size: int, steps: int) -> dict[str, float]:
    """Two jobs back to back: PNG encoding on the encoder thread (overlapping the next job) against inline."""
    engine = DiffusersEngine(registry, "cpu")
    params = [job(model, size, steps, n, batch_size=2) for n in range(2)]

    def inline(raw: RawImage) -> Any:
        return encode_raw(raw)

    def generate_and_encode() -> None:
        for p in params:
            for raw in engine.generate(p):
                inline(raw)

    inline_s = timed(generate_and_encode, repeats=2)
    samples = []
    for n in range(3):
        executor = GpuExecutor(engine, max_queued_per_user=10, max_queued_total=10, preview_interval=None)
        samples.append(await executor_run(executor, params, f"e{n}-"))
    overlapped = statistics.median(samples)
    return {"inline s": inline_s, "overlapped s": overlapped, "overlapped vs inline": overlapped / inline_s}


async def loop_lag(registry: ModelRegistry, size: int, steps: int) -> dict[str, float]:
    """The event loop's worst and 99th-percentile lag (a 5 ms timer's overshoot) while 8 jobs run through the
    executor, and while a 20 MiB upload is checked and hashed the way /imagine does (on the bot's edge threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from bot.uploads import check_and_store
    from engine.blobs import BlobStore

    lags: list[float] = []
    stop = asyncio.Event()

    async def monitor() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - started - 0.005)

    async def measure(work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
        lags.clear()
        stop.clear()
        watcher = asyncio.create_task(monitor())
        await work()
        stop.set()
        await watcher
        ordered = sorted(lags)
        return {"max ms": ordered[-1] * 1000, "p99 ms": ordered[int(len(ordered) * 0.99)] * 1000}

    engine = DiffusersEngine(registry, "cpu")
    on_thread(lambda: engine.generate(job("builtin:tiny", size, steps)))  # loaded before the clock starts
    executor = GpuExecutor(engine, max_queued_per_user=10, max_queued_total=20, max_batch_images=4)
    await executor.start()
    jobs = [job("builtin:tiny", size, steps, n) for n in range(8)]
    running = await measure(lambda: run_jobs(executor, jobs, "lag"))
    await executor.close()
    noise = random.Random(0).randbytes(2500 * 2500 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (2500, 2500), noise).save(buffer, format="PNG", compress_level=0)  # 18 MiB: near the cap
    data = buffer.getvalue()
    pool = ThreadPoolExecutor(max_workers=2)
    blobs = BlobStore(DATA / "blobs")

    async def upload() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(3):
            await loop.run_in_executor(pool, lambda: check_and_store(blobs, data, max_pixels=8 * 1024 * 1024))

    checking = await measure(upload)
    pool.shutdown()
    return {**{f"8 jobs {k}": v for k, v in running.items()}, **{f"upload check {k}": v for k, v in checking.items()},
            "upload MiB": len(data) / (1 << 20)}  # fmt: skip


def table(results: dict[str, Any]) -> str:
    lines = []
    for section, values in results.items():
        if not isinstance(values, dict):
            continue
        lines.append(f"\n{section}")
        for key, value in values.items():
            lines.append(f"  {key:36} {value:10.3f}" if isinstance(value, float) else f"  {key:36} {value}")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", default=f"builtin:tiny,{SD15_RANDOM}")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile on a CPU)")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if SD15_RANDOM in models:
        print("building a full-size random SD 1.5 (once)...", file=sys.stderr)
        on_thread(lambda: build_sd15_random(DATA / "models"))
    registry = ModelRegistry(DATA / "models", DATA / "cache")
    results: dict[str, Any] = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "size": args.size,
        "steps": args.steps,
    }
    for model in models:
        size = 64 if model.startswith("builtin:") and args.size > 128 else args.size
        print(f"{model}: overhead, throughput, speed options...", file=sys.stderr)
        results[f"{model}: overhead"] = await overhead(registry, model, size, args.steps)
        results[f"{model}: throughput, 8 jobs"] = await throughput(registry, model, size, args.steps)
        results[f"{model}: speed options"] = speed_options(registry, model, size, args.steps, args.compile)
        results[f"{model}: previews"] = preview_cost(registry, model, size, args.steps)
        results[f"{model}: encode"] = await encode_overlap(registry, model, size, args.steps)
        gc.collect()
    switch = [m for m in (SD15_RANDOM, f"{SD15_RANDOM}-file") if SD15_RANDOM in models] or ["builtin:shapes"]
    results["model switch"] = model_switch(registry, switch)
    results["LoRA (builtin:shapes, 64px)"] = lora_cost(registry, 64, args.steps)
    results["event loop"] = await loop_lag(registry, 64, args.steps)
    print(table(results))
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
