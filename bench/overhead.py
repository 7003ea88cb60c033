"""Easel's own cost per job: one job through the engine + executor vs a bare `pipe(...)` call, same process.

    python -m bench.overhead [--model builtin:tiny] [--steps 20] [--size 64] [--repeats 5]

Both sides use the same loaded pipeline, sampler, initial latents and seed. Easel's side is the whole job: queue,
A1111-style prompt encoding, its own denoising loop, per-step events, and PNG encoding with the parameter text;
the bare call returns PIL images. The ratio is Easel's median time over the bare call's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler

from bench.timing import executor_run, on_thread
from engine.executor import GpuExecutor
from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine
from engine.seeds import ImageRNG


def bare_call(engine: DiffusersEngine, params: GenerationParams) -> float:
    loaded = engine.load(params.model)
    pipe = loaded.pipe
    pipe.scheduler = EulerDiscreteScheduler.from_config(loaded.scheduler_config, timestep_spacing="linspace")
    scale = pipe.vae_scale_factor
    shape = (pipe.unet.config.in_channels, params.height // scale, params.width // scale)
    started = time.perf_counter()
    rng = ImageRNG(shape, params.image_seeds(), source=params.rng)
    noise = rng.first()
    with torch.inference_mode():
        pipe(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            num_inference_steps=params.steps,
            guidance_scale=params.cfg_scale,
            width=params.width,
            height=params.height,
            latents=noise,
            generator=rng.generators,
        )
    return time.perf_counter() - started


def new_executor(engine: DiffusersEngine) -> GpuExecutor:
    return GpuExecutor(engine, max_queued_per_user=10, max_queued_total=10)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = Path(tempfile.gettempdir()) / "easel-bench"
    registry = ModelRegistry(data / "models", data / "cache")
    engine = DiffusersEngine(registry, args.device)
    params = GenerationParams(
        prompt="a red circle on a blue background", model=args.model, seed=42, steps=args.steps,
        sampler="Euler", cfg_scale=5.0, width=args.size, height=args.size, rng="CPU",
    )  # fmt: skip
    started = time.perf_counter()
    on_thread(lambda: engine.load(args.model))
    load_seconds = time.perf_counter() - started
    bare, ours = [], []
    for n in range(args.repeats + 1):  # interleaved, so drift on a busy machine hits both sides alike; 0 warms up
        bare.append(on_thread(lambda: bare_call(engine, params)))
        ours.append(await executor_run(new_executor(engine), [params], f"bench{n}-"))
    bare, ours = bare[1:], ours[1:]
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"model {args.model}, {args.size}x{args.size}, {args.steps} steps, Euler, {torch.get_num_threads()} threads")
    print(f"load (first, incl. build if needed): {load_seconds:.2f} s")
    print(f"bare pipe(...):        median {b * 1000:.1f} ms over {args.repeats}")
    print(f"Easel engine+executor: median {o * 1000:.1f} ms over {args.repeats}")
    print(f"ratio Easel / bare: {o / b:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
