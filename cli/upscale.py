"""`python main.py upscale IMAGE --upscaler NAME --scale S --out OUT.png`: A1111's Extras upscale (no redrawing)
through the same resolver and executor as every job; the output keeps the image's parameter text and adds the
postprocessing fields in an `extras` chunk, as A1111 writes them."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from cli.imagine import MAX_INIT_BYTES, check_out, follow
from engine.blobs import BlobStore
from engine.errors import EaselError, InvalidParamsError
from engine.images import check_upload
from engine.infotext import extras_text
from engine.jobs import Executor, Job
from engine.params import Limits
from engine.request import Catalog, Request, UpscaleAsk, resolve


async def upscale(args: argparse.Namespace, *, catalog: Catalog, executor: Executor, blobs: BlobStore,
                  limits: Limits) -> int:  # fmt: skip
    """0 when the upscaled image was written, 1 if the job failed, 2 for bad input."""
    try:
        check_out(Path(args.out))
        if args.scale is not None and (args.width is not None or args.height is not None):
            raise InvalidParamsError("Give --scale, or --width and --height, not both.")
        data = Path(args.image).read_bytes()  # noqa: ASYNC240 - one local file, read before anything is queued
        if len(data) > MAX_INIT_BYTES:
            raise InvalidParamsError(f"{args.image}: over {MAX_INIT_BYTES >> 20} MiB.")
        # The header's size is checked before decoding: the source may have up to the output ceiling's pixels.
        _, width, height = check_upload(data, max_bytes=MAX_INIT_BYTES, max_pixels=limits.max_hires_pixels)
        size = (args.width, args.height) if args.width is not None or args.height is not None else None
        request = Request(
            init_image=blobs.put(data),
            init_size=(width, height),
            model=None,
            upscale=UpscaleAsk(args.upscaler, args.scale, size),
        )
        resolved = resolve(request, catalog, limits)
        for note in resolved.notes:
            print(f"note: {note}", file=sys.stderr)
        params = resolved.params
        ticket = await executor.submit(Job(job_id=uuid.uuid4().hex[:12], user_id="cli", params=params))
    except (EaselError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out_w, out_h = params.extras_size()
    desc = f"{params.extras_upscaler} {width}x{height} -> {out_w}x{out_h}"
    code = await follow(ticket, Path(args.out), total=1, desc=desc, unit="tile")
    if code == 0:
        print(extras_text(params))
    return code
