"""`python main.py imagine "a prompt"`: one job through the real executor, with a progress bar, written as PNGs."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from engine.blobs import BlobStore
from engine.errors import EaselError
from engine.images import check_upload
from engine.jobs import Executor, Failed, Finished, Job, Progress, Queued, Started, WasCancelled
from engine.models.registry import ModelRegistry
from engine.params import Limits, build_params
from engine.paste import pasted_model, read_pasted

# The flags that are build_params options under the same name.
_OPTION_FLAGS = (
    "prompt", "negative_prompt", "steps", "sampler", "schedule", "cfg_scale", "seed", "width", "height",
    "batch_size", "subseed", "subseed_strength", "clip_skip", "rng", "ensd", "denoising_strength", "hr_scale",
    "hr_steps", "hr_upscaler", "hr_sampler", "hr_schedule",
)  # fmt: skip
MAX_INIT_BYTES = 20 * 1024 * 1024


async def imagine(
    args: argparse.Namespace,
    *,
    registry: ModelRegistry,
    executor: Executor,
    blobs: BlobStore,
    limits: Limits,
    default_model: str,
) -> int:
    """Run the job the arguments describe; 0 when the images were written, 1 if it failed, 2 for bad input."""
    from tqdm import tqdm

    try:
        options: dict[str, Any] = {}
        notes: list[str] = []
        model = registry.resolve(args.model).name if args.model else default_model
        if args.parameters:
            paste = read_pasted(args.parameters)
            options.update(paste.options)
            notes.extend(paste.notes)
            if not args.model:
                model, note = pasted_model(registry, paste.model, default_model)
                notes.extend([note] if note else [])
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        options.update({key: getattr(args, key) for key in _OPTION_FLAGS if getattr(args, key) is not None})
        if args.enable_hr:
            options["enable_hr"] = True
        if args.init_image:
            data = Path(args.init_image).read_bytes()  # noqa: ASYNC240 - one small local file, before anything is queued
            check_upload(data, max_bytes=MAX_INIT_BYTES, max_pixels=limits.max_pixels * 4)
            options["init_image"] = blobs.put(data)
        params = build_params(options, model=model, limits=limits, defaults=registry.defaults_for(model))
        ticket = await executor.submit(Job(job_id=uuid.uuid4().hex[:12], user_id="cli", params=params))
    except (EaselError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bar = tqdm(total=params.steps, desc=f"{model} seed {params.seed}", unit="step", file=sys.stderr)
    async for event in ticket.events:
        if isinstance(event, Queued):
            bar.set_postfix_str(f"queued #{event.position}")
        elif isinstance(event, Started):
            bar.set_postfix_str("")
        elif isinstance(event, Progress):
            bar.total = event.total
            bar.n = event.step
            bar.refresh()
        elif isinstance(event, Finished):
            bar.close()
            out = Path(args.out)
            for i, image in enumerate(event.result.images):
                path = out if i == 0 else out.with_name(f"{out.stem}-{i}{out.suffix}")
                try:
                    path.write_bytes(image.png)
                except OSError as err:  # a full disk, a folder that does not exist, no permission
                    print(f"error: could not save {path}: {err.strerror or err}", file=sys.stderr)
                    return 1
                print(f"saved {path}", file=sys.stderr)
            print(event.result.infotext)
            return 0
        elif isinstance(event, Failed):
            bar.close()
            print(f"error: {event.error}", file=sys.stderr)
            return 1
        elif isinstance(event, WasCancelled):
            bar.close()
            print("cancelled", file=sys.stderr)
            return 1
    return 1
