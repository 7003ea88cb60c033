"""Easel's composition root: read settings once, set up logging, build the shared objects once (limits, model
registry, blob store, LoRA library, embeddings, engines, executor, job store, bot), and run. No logic.

python main.py                         start the Discord bot (needs EASEL_DISCORD_TOKEN)
python main.py --sync-commands         ... and send its slash commands to Discord even if they did not change
python main.py imagine "a prompt"      make an image locally, without Discord
python main.py models                  list the models Easel found
python main.py worker                  run jobs for a bot on another machine (needs EASEL_REDIS_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from cli import build_parser
from config.logging import setup_logging
from config.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from engine.blobs import BlobStore
    from engine.detectors.files import DetectorLibrary
    from engine.embeddings import EmbeddingDB
    from engine.jobs import Executor
    from engine.loras import LoraLibrary
    from engine.models.registry import ModelRegistry
    from engine.params import Limits
    from engine.taggers.files import TaggerLibrary
    from engine.upscalers.files import UpscalerLibrary
    from engine.vaes import VaeLibrary

log = logging.getLogger("easel")


class EngineSide(NamedTuple):
    """Everything the bot and the CLI share, each built once."""

    limits: Limits
    registry: ModelRegistry
    blobs: BlobStore
    loras: LoraLibrary
    embeddings: EmbeddingDB
    vaes: VaeLibrary
    executor: Executor
    upscalers: UpscalerLibrary
    detectors: DetectorLibrary
    taggers: TaggerLibrary


def build_registry(settings: Settings) -> ModelRegistry:
    from engine.models.registry import ModelRegistry

    return ModelRegistry(settings.models_dir, settings.data_dir / "cache", allow_ckpt=settings.allow_ckpt)


def build_engine_side(
    settings: Settings, *, previews: bool, load_at_start: bool, remote: bool = False, worker: bool = False
) -> EngineSide:
    """The engine half of Easel. `load_at_start`: each worker loads the default model before its first job (the bot;
    a compiled UNet is always warmed up), so that no job waits for the load and a crash loop never blames one.
    `remote`: the bot hands its jobs to GPU workers on other machines through Redis, and builds no engine at all.
    `worker`: the executor of a `main.py worker` (the bot it serves does the admission: no queue caps here)."""
    from engine.blobs import BlobStore
    from engine.detectors.files import DetectorLibrary
    from engine.embeddings import EmbeddingDB
    from engine.executor import PREVIEW_INTERVAL, GpuExecutor, worker_devices
    from engine.flux.modules import FluxModules
    from engine.loras import LoraLibrary
    from engine.params import Limits
    from engine.pipeline import DiffusersEngine
    from engine.queue_policy import CostLimits
    from engine.speed import SpeedOptions
    from engine.taggers.files import TaggerLibrary
    from engine.upscalers.arch import detect_with_spandrel, spandrel_available
    from engine.upscalers.files import UpscalerLibrary
    from engine.vaes import VaeLibrary

    limits = Limits(
        max_steps=settings.max_steps,
        max_pixels=settings.max_pixels,
        max_hires_pixels=max(settings.max_hires_pixels, settings.max_pixels),
        max_batch=settings.max_batch,
        default_rng=settings.rng,
    )
    registry = build_registry(settings)
    blobs = BlobStore(settings.data_dir / "blobs")
    loras = LoraLibrary.with_builtins([settings.lora_dir], registry.hashes)
    embeddings = EmbeddingDB([settings.embedding_dir])
    vaes = VaeLibrary([settings.vae_folder], registry.hashes)
    upscalers = UpscalerLibrary(settings.upscaler_folders, detect_with_spandrel if spandrel_available() else None)
    detectors = DetectorLibrary(settings.detector_folders)
    taggers = TaggerLibrary(settings.tagger_folders)
    flux_modules = FluxModules(settings.flux_module_folders)
    if remote:
        pool = build_pool(settings, registry, blobs)
        return EngineSide(limits, registry, blobs, loras, embeddings, vaes, pool, upscalers, detectors, taggers)
    memory = settings.model_memory_mb * 1024 * 1024 if settings.model_memory_mb else None
    speed = SpeedOptions(
        dtype=settings.dtype,
        channels_last=settings.channels_last,
        fuse_qkv=settings.fuse_qkv,
        compile=settings.compile,
        compile_sizes=settings.compile_size_list,
        compile_mode=settings.compile_mode,
        flux_offload=settings.flux_memory == "offload",
        flux_t5_cpu=settings.flux_t5_cpu,
    )
    # One engine per device; all of them share the LoRAs, embeddings, VAEs and blobs, so a rescan reaches every worker.
    engines = [
        DiffusersEngine(
            registry,
            device,
            max_loaded=settings.max_loaded_models,
            memory_budget=memory,
            speed=speed,
            loras=loras,
            embeddings=embeddings,
            vaes=vaes,
            blobs=blobs,
            upscalers=upscalers,
            detectors=detectors,
            taggers=taggers,
            flux_modules=flux_modules,
        )
        for device in worker_devices(settings.devices)
    ]
    executor = GpuExecutor(
        engines,
        max_queued_per_user=WORKER_QUEUE if worker else settings.max_queued_per_user,
        max_queued_total=WORKER_QUEUE if worker else settings.max_queued_total,
        preview_interval=PREVIEW_INTERVAL if previews else None,
        planner=registry.plan,
        max_batch_images=settings.max_batch_images,
        warm_up=(
            (settings.default_model or registry.default_model(None))
            if load_at_start or settings.compile != "off"
            else None
        ),
        # A worker runs what its bot admitted; the bot holds the work ceilings.
        costs=CostLimits() if worker else CostLimits(settings.max_job_cost, settings.max_user_cost),
    )
    return EngineSide(limits, registry, blobs, loras, embeddings, vaes, executor, upscalers, detectors, taggers)


# A worker's local queue only holds what the bot handed it (a batch per device); this is a bound, not a policy.
WORKER_QUEUE = 256


def build_pool(settings: Settings, registry: ModelRegistry, blobs: BlobStore) -> Executor:
    from engine.queue_policy import CostLimits
    from engine.remote.pool import RemotePool
    from engine.remote.transport import connect

    assert settings.redis_url is not None
    return RemotePool(
        connect(settings.redis_url.get_secret_value()),
        planner=registry.plan,
        max_queued_per_user=settings.max_queued_per_user,
        max_queued_total=settings.max_queued_total,
        costs=CostLimits(settings.max_job_cost, settings.max_user_cost),
        model_hash=registry.known_hash,
        missing=settings.missing_model,
        timeout=settings.worker_timeout,
        on_models=registry.set_remote,
        blobs=blobs,
    )


async def run_worker(settings: Settings) -> int:
    """A GPU worker for a bot on another machine: the jobs come from Redis, and so do the cancels."""
    import socket

    from engine.executor import GpuExecutor, worker_devices
    from engine.remote.transport import connect, safe_url
    from engine.remote.worker import RemoteWorker, default_worker_name

    assert settings.redis_url is not None
    url = settings.redis_url.get_secret_value()
    side = build_engine_side(settings, previews=settings.previews, load_at_start=True, worker=True)
    assert isinstance(side.executor, GpuExecutor)
    name = settings.worker_name or default_worker_name(socket.gethostname(), os.getpid())
    worker = RemoteWorker(
        connect(url),
        side.executor,
        side.registry,
        name=name,
        devices=worker_devices(settings.devices),
        max_images=settings.max_batch_images,
        heartbeat=settings.worker_timeout / 5,
        blobs=side.blobs,
    )
    log.info("worker %s: jobs from %s", worker.name, safe_url(url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    settle_heap()
    await worker.run(stop)
    return 0


def default_model(settings: Settings, registry: ModelRegistry, used: str | None = None) -> str:
    """The default model, with a warning where a built-in one stands in for a missing one (`used`: only if that is
    the model a job actually uses)."""
    name = registry.default_model(settings.default_model)
    if name.startswith("builtin:") and not settings.default_model and used in (None, name):
        log.warning(
            "No model in %s: using %s. Put a .safetensors checkpoint (or a diffusers folder) in %s, "
            "or set EASEL_DEFAULT_MODEL.",
            settings.models_dir,
            name,
            settings.models_dir,
        )
    return name


async def run_imagine(settings: Settings, args: argparse.Namespace) -> int:
    """`imagine`, `upscale` or `describe`: one job through the resolver and the in-process executor."""
    from cli.describe import describe
    from cli.imagine import imagine
    from cli.upscale import upscale
    from engine.catalog import ExtraNetworks
    from engine.request import Catalog

    side = build_engine_side(settings, previews=False, load_at_start=False)
    networks = ExtraNetworks(side.loras, side.embeddings, side.vaes, side.upscalers, side.detectors, side.taggers)
    catalog = Catalog(side.registry, networks, settings.default_model)
    limits = replace(side.limits, scope="the bot's config", settings_named=True)
    try:
        if args.command == "upscale":
            return await upscale(args, catalog=catalog, executor=side.executor, blobs=side.blobs, limits=limits)
        if args.command == "describe":
            return await describe(args, catalog=catalog, executor=side.executor, blobs=side.blobs, limits=limits)
        return await imagine(
            args,
            catalog=catalog,
            executor=side.executor,
            blobs=side.blobs,
            limits=limits,
            on_model=lambda used: default_model(settings, side.registry, used),
        )
    finally:
        await side.executor.close()
        networks.close()


def settle_heap() -> None:
    """Collect once, then freeze what start-up made (torch, diffusers, discord.py: ~400k objects) so that the
    cyclic GC never walks it again: a full collection of it holds the GIL for ~200 ms on a small CPU, a stall of
    the event loop. Measured by `python -m bench.load`."""
    gc.collect()
    gc.freeze()


async def run_bot(settings: Settings, *, sync_commands: bool) -> int:
    from bot.client import EaselBot, point_at
    from bot.store import JobStore
    from engine.catalog import ExtraNetworks

    side = build_engine_side(
        settings, previews=settings.previews, load_at_start=True, remote=settings.redis_url is not None
    )
    if settings.redis_url is not None:
        await side.executor.start()  # learn the workers (and their models) before the first job or resume
    default_model(settings, side.registry)
    store = JobStore.open(settings.data_dir)
    networks = ExtraNetworks(side.loras, side.embeddings, side.vaes, side.upscalers, side.detectors, side.taggers)
    # discord.py's endpoints are process-wide class attributes: set here, once, for the whole process.
    point_at(settings.discord_api_url, settings.discord_gateway_url)
    bot = EaselBot(
        settings,
        side.executor,
        side.registry,
        store,
        networks=networks,
        limits=side.limits,
        blobs=side.blobs,
        sync_commands=sync_commands,
    )
    settle_heap()
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
        await side.executor.close()
        networks.close()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"easel: bad setting: {err}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.command in ("imagine", "upscale", "describe"):
        return check_devices(settings) or asyncio.run(run_imagine(settings, args))
    if args.command == "models":
        from cli.models import list_models
        from engine.detectors.files import DetectorLibrary
        from engine.taggers.files import TaggerLibrary
        from engine.upscalers.files import UpscalerLibrary

        return list_models(
            build_registry(settings),
            UpscalerLibrary(settings.upscaler_folders),
            DetectorLibrary(settings.detector_folders),
            TaggerLibrary(settings.tagger_folders),
        )
    if args.command == "convert-detector":
        from cli.detectors import convert_detector

        return convert_detector(args.file, args.out, settings.detector_folders[0])
    if args.command == "worker":
        if settings.redis_url is None:
            print(
                "easel: set EASEL_REDIS_URL (e.g. redis://easel-worker:PASSWORD@bot-host:6379/0) to run a worker; "
                "see the README's 'Add a GPU machine'.",
                file=sys.stderr,
            )
            return 2
        return check_devices(settings) or asyncio.run(run_worker(settings))
    if settings.discord_token is None:
        print(
            "easel: set EASEL_DISCORD_TOKEN (in the environment or .env) to start the bot, or try "
            '`python main.py imagine "a red circle on a blue background"` to make an image locally.',
            file=sys.stderr,
        )
        return 2
    return check_devices(settings) or asyncio.run(run_bot(settings, sync_commands=args.sync_commands))


def check_devices(settings: Settings) -> int:
    """2 (after one line naming EASEL_DEVICE) when a device it lists cannot run here, else 0."""
    from engine.executor import device_problem

    problem = device_problem(settings.devices)
    if problem is None:
        return 0
    print(f"easel: bad setting: EASEL_DEVICE: {problem}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
