"""`python main.py imagine "a prompt"`: one request through the same resolver as Discord's, one job through the real
executor, with a progress bar, written as PNGs."""

from __future__ import annotations

import argparse
import io
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from engine.blobs import BlobStore
from engine.errors import EaselError, InvalidParamsError
from engine.images import check_upload
from engine.inpaint import check_mask, transparency_mask
from engine.jobs import Executor, Failed, Finished, Job, Progress, Queued, Started, Ticket, WasCancelled
from engine.outpaint import OUTPAINT_CONTENT, OUTPAINT_DENOISING, outpaint
from engine.params import Limits
from engine.request import Catalog, Request, resolve

# The flags that are options under the same name.
_OPTION_FLAGS = (
    "negative_prompt", "steps", "sampler", "schedule", "cfg_scale", "distilled_cfg_scale", "seed", "width", "height",
    "batch_size", "subseed", "subseed_strength", "clip_skip", "rng", "ensd", "denoising_strength", "hr_scale",
    "hr_steps", "hr_upscaler", "hr_sampler", "hr_schedule", "vae", "mask_blur", "inpainting_mask_invert",
    "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding", "initial_noise_multiplier", "tiling",
    "detailers",
)  # fmt: skip
MAX_INIT_BYTES = 20 * 1024 * 1024


def cli_request(args: argparse.Namespace, *, init_image: str | None = None, mask: str | None = None) -> Request:
    """The command line as a request: the prompt as typed (its flags, or a whole block), the block of
    `--parameters`, and the flags as explicit options. `-` as the prompt means the block's."""
    options: dict[str, Any] = {key: getattr(args, key) for key in _OPTION_FLAGS if getattr(args, key) is not None}
    if args.enable_hr is not None:
        options["enable_hr"] = args.enable_hr
    if mask is not None:
        options["mask"] = mask
    prompt = "" if args.prompt.strip() == "-" else args.prompt
    return Request(
        prompt=prompt,
        options=options,
        paste=args.parameters,
        model=args.model,
        lora=args.lora,
        lora_weight=args.lora_weight,
        init_image=init_image,
        hires_off="--no-hires",
    )


def read_mask(path: str | None, init: bytes, blobs: BlobStore, limits: Limits) -> str | None:
    """The mask's blob: the `--mask` file (checked from its header, then for paint), else an init image's
    transparent area, else none (plain img2img)."""
    if path:
        data = Path(path).read_bytes()
        check_mask(data, max_bytes=MAX_INIT_BYTES, max_pixels=limits.max_pixels * 4)
        return blobs.put(data)
    found = transparency_mask(init)
    return blobs.put(found) if found is not None else None


def outpaint_request(args: argparse.Namespace, data: bytes, blobs: BlobStore, limits: Limits) -> tuple[str, str]:
    """Zoom Out, Pan or Make Square: the canvas and the mask of its new area as blobs, and the job's size and
    outpainting settings as options (those the command line gives win)."""
    if sum([args.zoom_out is not None, args.pan is not None, bool(args.make_square)]) > 1 or args.mask:
        raise InvalidParamsError("Give one of --zoom-out, --pan and --make-square, without --mask.")
    with Image.open(io.BytesIO(data)) as opened:
        picture = opened.convert("RGB")
    made = outpaint(
        picture, max_pixels=limits.max_pixels, zoom=args.zoom_out or 1.0, pan=args.pan, square=bool(args.make_square)
    )
    args.width, args.height = args.width or made.width, args.height or made.height
    args.inpainting_fill = args.inpainting_fill or OUTPAINT_CONTENT
    args.denoising_strength = args.denoising_strength or OUTPAINT_DENOISING
    return blobs.put(made.canvas), blobs.put(made.mask)


def check_out(out: Path) -> None:
    """Refuse, before anything is queued, an output path the images could not be written to."""
    folder = out.parent if str(out.parent) else Path()
    if not folder.is_dir():
        raise InvalidParamsError(f"--out: the folder {str(folder)!r} does not exist.")
    if not os.access(folder, os.W_OK):
        raise InvalidParamsError(f"--out: the folder {str(folder)!r} is not writable.")
    if out.is_dir():
        raise InvalidParamsError(f"--out: {str(out)!r} is a folder; give a file name such as out.png.")


async def imagine(
    args: argparse.Namespace,
    *,
    catalog: Catalog,
    executor: Executor,
    blobs: BlobStore,
    limits: Limits,
    on_model: Callable[[str], object] = lambda used: None,
) -> int:
    """Run the job the arguments describe; 0 when the images were written, 1 if it failed, 2 for bad input.
    `on_model` hears the model the job uses, before it is queued (to say when a built-in one stands in)."""
    try:
        if not args.prompt.strip() and not args.parameters:
            raise InvalidParamsError("Give a prompt, or a parameter block with --parameters.")
        check_out(Path(args.out))
        digest = mask = None
        outpainting = args.zoom_out is not None or args.pan is not None or args.make_square
        if args.init_image:
            data = Path(args.init_image).read_bytes()  # noqa: ASYNC240 - one small local file, before anything is queued
            check_upload(data, max_bytes=MAX_INIT_BYTES, max_pixels=limits.max_pixels * 4)
            if outpainting:
                digest, mask = outpaint_request(args, data, blobs, limits)
            else:
                digest = blobs.put(data)
                mask = read_mask(args.mask, data, blobs, limits)
        elif args.mask or outpainting:
            raise InvalidParamsError("--mask, --zoom-out, --pan and --make-square go with --init-image.")
        resolved = resolve(cli_request(args, init_image=digest, mask=mask), catalog, limits)
        for note in resolved.notes:
            print(f"note: {note}", file=sys.stderr)
        params = resolved.params
        on_model(params.model)
        ticket = await executor.submit(Job(job_id=uuid.uuid4().hex[:12], user_id="cli", params=params))
    except (EaselError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return await follow(ticket, Path(args.out), total=params.steps, desc=f"{params.model} seed {params.seed}")


async def follow(ticket: Ticket, out: Path, *, total: int, desc: str, unit: str = "step") -> int:
    """Show a job's progress and write its images (`out`, then `out-1`...): 0 when written, 1 if it failed."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
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
            for i, image in enumerate(event.result.images):
                path = out if i == 0 else out.with_name(f"{out.stem}-{i}{out.suffix}")
                try:
                    path.write_bytes(image.png)
                except OSError as err:  # a full disk, no permission
                    print(f"error: could not save {path}: {err.strerror or err}", file=sys.stderr)
                    return 1
                print(f"saved {path}", file=sys.stderr)
            for note in event.result.notes:
                print(f"note: {note}", file=sys.stderr)
            if event.result.infotext:
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
