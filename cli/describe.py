"""`python main.py describe IMAGE [--tagger NAME] [--threshold T]`: the image's tags as a prompt and its rating,
through the same resolver and executor as every job (a WD14 tagger from the tagger folder)."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from cli.imagine import MAX_INIT_BYTES
from engine.blobs import BlobStore
from engine.errors import EaselError, InvalidParamsError
from engine.images import check_upload
from engine.jobs import Executor, Failed, Finished, Job, WasCancelled
from engine.params import Limits
from engine.request import Catalog, DescribeAsk, Request, resolve


async def describe(args: argparse.Namespace, *, catalog: Catalog, executor: Executor, blobs: BlobStore,
                   limits: Limits) -> int:  # fmt: skip
    """0 when the tags were printed (the prompt on stdout; the rating and suggestions on stderr), 1 if the job
    failed, 2 for bad input."""
    try:
        data = Path(args.image).read_bytes()  # noqa: ASYNC240 - one local file, read before anything is queued
        if len(data) > MAX_INIT_BYTES:
            raise InvalidParamsError(f"{args.image}: over {MAX_INIT_BYTES >> 20} MiB.")
        _, width, height = check_upload(data, max_bytes=MAX_INIT_BYTES, max_pixels=limits.max_hires_pixels)
        request = Request(init_image=blobs.put(data), init_size=(width, height),
                          describe=DescribeAsk(args.tagger, args.threshold))  # fmt: skip
        params = resolve(request, catalog, limits).params
        ticket = await executor.submit(Job(job_id=uuid.uuid4().hex[:12], user_id="cli", params=params))
    except (EaselError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    async for event in ticket.events:
        if isinstance(event, Finished):
            found = event.result.images[0].description
            if found is None:
                print("error: the tagger gave no tags", file=sys.stderr)
                return 1
            ratings = ", ".join(f"{name} {p:.2f}" for name, p in found.ratings)
            print(f"rating: {found.rating} ({ratings}); tagger {found.tagger}", file=sys.stderr)
            print(found.prompt())
            return 0
        if isinstance(event, Failed):
            print(f"error: {event.error}", file=sys.stderr)
            return 1
        if isinstance(event, WasCancelled):
            print("cancelled", file=sys.stderr)
            return 1
    return 1
