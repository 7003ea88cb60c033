"""Easel's composition root: read settings once, set up logging, build engine + executor (+ bot), run. No logic.

python main.py                         start the Discord bot (needs EASEL_DISCORD_TOKEN)
python main.py imagine "a prompt"      make an image locally, without Discord
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from config.logging import setup_logging
from config.settings import Settings, SettingsError, load_settings

log = logging.getLogger("easel")


def _cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="Easel: Stable Diffusion for your Discord server.")
    sub = parser.add_subparsers(dest="command")
    img = sub.add_parser("imagine", help="make an image locally, without Discord")
    img.add_argument("prompt")
    img.add_argument("--negative", "--negative-prompt", dest="negative_prompt", default=None)
    img.add_argument("--steps", default=None)
    img.add_argument("--sampler", default=None, help='A1111 name, e.g. "DPM++ 2M", "Euler a", "DPM++ 2M Karras"')
    img.add_argument("--schedule", default=None, help="schedule type: Automatic, Karras, Exponential, ...")
    img.add_argument("--cfg", "--cfg-scale", dest="cfg_scale", default=None)
    img.add_argument("--seed", default=None, help="-1 or empty for random")
    img.add_argument("--width", default=None)
    img.add_argument("--height", default=None)
    img.add_argument("--batch", dest="batch_size", default=None)
    img.add_argument("--subseed", default=None, help="variation seed")
    img.add_argument("--subseed-strength", dest="subseed_strength", default=None, help="variation strength 0..1")
    img.add_argument("--clip-skip", dest="clip_skip", default=None)
    img.add_argument("--model", default=None, help="model name (see `python main.py models`)")
    img.add_argument("--rng", default=None, help="RNG source: GPU (default; NVIDIA's numbers anywhere), CPU or NV")
    img.add_argument("--ensd", default=None, help="eta noise seed delta (A1111 ENSD)")
    img.add_argument("--init-image", dest="init_image", default=None, help="img2img: a PNG/JPEG/WebP file")
    img.add_argument("--denoise", dest="denoising_strength", default=None, help="img2img / hires denoising 0..1")
    img.add_argument("--hires", dest="enable_hr", action="store_true", help="hires fix (A1111)")
    img.add_argument("--hr-scale", dest="hr_scale", default=None)
    img.add_argument("--hr-steps", dest="hr_steps", default=None)
    img.add_argument("--hr-upscaler", dest="hr_upscaler", default=None, help='"Latent" (default), "Lanczos", ...')
    img.add_argument("--parameters", default=None, help="an A1111/civitai parameter block (the other flags win)")
    img.add_argument("--out", default="out.png", help="output PNG path (batches add -1, -2, ...)")
    sub.add_parser("models", help="list the models Easel can use, and refused files")
    return parser


def _build_engine(settings: Settings, *, previews: bool = False) -> tuple[Any, Any, Any]:
    """The registry, the first device's engine (its LoRA library and embeddings are everyone's) and the executor."""
    from engine.blobs import BlobStore
    from engine.executor import PREVIEW_INTERVAL, GpuExecutor, worker_devices
    from engine.models.registry import ModelRegistry
    from engine.pipeline import DiffusersEngine

    registry = ModelRegistry(settings.models_dir, settings.data_dir / "cache", allow_ckpt=settings.allow_ckpt)
    blobs = BlobStore(settings.data_dir / "blobs")
    first, *others = worker_devices(settings.devices)
    engine = DiffusersEngine(
        registry, first, lora_dirs=[settings.lora_dir], embedding_dirs=[settings.embedding_dir], blobs=blobs
    )
    engines = [engine]
    for device in others:
        extra = DiffusersEngine(registry, device, blobs=blobs)
        # One LoRA library and one embedding set for all devices, so a rescan from Discord reaches every worker.
        extra.loras = engine.loras
        extra.loader.embeddings = engine.loader.embeddings
        engines.append(extra)
    executor = GpuExecutor(
        engines,
        max_queued_per_user=settings.max_queued_per_user,
        max_queued_total=settings.max_queued_total,
        preview_interval=PREVIEW_INTERVAL if previews else None,
    )
    return registry, engine, executor


def _default_model(settings: Settings, registry: Any) -> str:
    name: str = registry.default_model(settings.default_model)
    if name.startswith("builtin:") and not settings.default_model:
        log.warning(
            "No model in %s: using %s. Put a .safetensors checkpoint (or a diffusers folder) in %s, "
            "or set EASEL_DEFAULT_MODEL.",
            settings.models_dir,
            name,
            settings.models_dir,
        )
    return name


async def _imagine(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.blobs import BlobStore
    from engine.errors import EaselError
    from engine.images import check_upload
    from engine.infotext import options_from_infotext, parse_infotext
    from engine.jobs import Failed, Finished, Job, Progress, Queued, Started, WasCancelled
    from engine.params import Limits, build_params

    registry, _, executor = _build_engine(settings)
    try:
        model = registry.resolve(args.model).name if args.model else _default_model(settings, registry)
        options: dict[str, Any] = {}
        if args.parameters:
            pasted, notes = options_from_infotext(parse_infotext(args.parameters))
            options.update(pasted)
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
        for key in ("prompt", "negative_prompt", "steps", "sampler", "schedule", "cfg_scale", "seed", "width",
                    "height", "batch_size", "subseed", "subseed_strength", "clip_skip", "rng", "ensd",
                    "denoising_strength", "hr_scale", "hr_steps", "hr_upscaler"):  # fmt: skip
            if getattr(args, key) is not None:
                options[key] = getattr(args, key)
        if args.enable_hr:
            options["enable_hr"] = True
        if args.init_image:
            data = Path(args.init_image).read_bytes()  # noqa: ASYNC240 - one small local file, before anything is queued
            check_upload(data, max_bytes=20 * 1024 * 1024, max_pixels=settings.max_pixels * 4)
            options["init_image"] = BlobStore(settings.data_dir / "blobs").put(data)
        limits = Limits(
            max_steps=settings.max_steps,
            max_pixels=settings.max_pixels,
            max_batch=settings.max_batch,
            default_rng=settings.rng,
        )
        params = build_params(options, model=model, limits=limits, defaults=registry.defaults_for(model))
        ticket = await executor.submit(Job(job_id=uuid.uuid4().hex[:12], user_id="cli", params=params))
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
                    path.write_bytes(image.png)
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
    except (EaselError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        await executor.close()


def _models(settings: Settings) -> int:
    from engine.models.registry import ModelRegistry

    registry = ModelRegistry(settings.models_dir, settings.data_dir / "cache", allow_ckpt=settings.allow_ckpt)
    for entry in registry.entries():
        status = f"refused: {entry.refused}" if entry.refused else entry.kind
        print(f"{entry.name}\t{status}")
    return 0


async def _run_bot(settings: Settings) -> int:
    from bot.client import build_bot
    from bot.store import JobStore
    from engine.catalog import ExtraNetworks

    registry, engine, executor = _build_engine(settings, previews=settings.previews)
    _default_model(settings, registry)
    store = JobStore(settings.data_dir / "easel.sqlite3")
    # The engine's own LoRA library and embeddings: a rescan from Discord is what the next job sees.
    networks = ExtraNetworks(engine.loras, engine.loader.embeddings)
    bot = build_bot(settings, executor, registry, store, networks=networks)
    assert settings.discord_token is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stopper = asyncio.create_task(stop.wait())
    try:
        async with bot:
            runner = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done and runner.exception() is not None:
                # A refused token or an unreachable gateway: one clear line, not a traceback.
                print(f"easel: could not connect to Discord: {runner.exception()}", file=sys.stderr)
                return 1
            log.info("stopping: jobs still queued are kept and resume at the next start")
            # Stopped mid-connect, the client would fail on its closed session as a stray "never retrieved" error.
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
    finally:
        stopper.cancel()
        await executor.close()
        networks.close()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _cli().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"easel: bad setting: {err}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.command == "imagine":
        return asyncio.run(_imagine(settings, args))
    if args.command == "models":
        return _models(settings)
    if settings.discord_token is None:
        print(
            "easel: set EASEL_DISCORD_TOKEN (in the environment or .env) to start the bot, or try "
            '`python main.py imagine "a red circle on a blue background"` to make an image locally.',
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_run_bot(settings))


if __name__ == "__main__":
    sys.exit(main())
