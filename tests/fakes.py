"""Fakes for the engine side of the Discord tests: an executor that emits real event streams with small real PNGs,
a model registry with a few names, and a LoRA/embedding catalog. They live in tests/, never in the product."""

from __future__ import annotations

import asyncio
import difflib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from engine.detailer import detector_stem
from engine.errors import GenerationFailedError, InvalidParamsError, ModelUnavailableError, QueueFullError
from engine.infotext import ModelHint
from engine.jobs import (
    Failed,
    Finished,
    GeneratedImage,
    Job,
    JobEvent,
    JobResult,
    Progress,
    Queued,
    Started,
    Ticket,
    WasCancelled,
)
from engine.models.layers import LayerShapes
from engine.params import GenerationParams, ModelDefaults
from engine.plan import ModelTraits
from engine.prompts.extra_networks import read_loras
from engine.taggers.description import Description


def tiny_png(width: int, height: int, seed: int) -> bytes:
    """A real PNG, one flat colour picked from the seed (so different seeds give different bytes)."""
    colour = (seed % 251, (seed // 251) % 251, (seed // 63001) % 251)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_infotext(params: GenerationParams, seed: int) -> str:
    """A1111-shaped parameter text (enough for the bot, which only shows it)."""
    lines = [params.prompt]
    if params.negative_prompt:
        lines.append(f"Negative prompt: {params.negative_prompt}")
    fields = [
        f"Steps: {params.steps}",
        f"Sampler: {params.sampler}",
        f"Schedule type: {params.schedule}",
        f"CFG scale: {params.cfg_scale:g}",
        f"Seed: {seed}",
        f"Size: {params.width}x{params.height}",
        f"Model: {params.model}",
    ]
    if params.subseed_strength > 0:
        fields += [f"Variation seed: {params.subseed}", f"Variation seed strength: {params.subseed_strength:g}"]
    lines.append(", ".join(fields))
    return "\n".join(lines)


def fake_description(rating: str, tagger: str) -> Description:
    """A tagger's answer: `rating` most probable, a character and a few general tags."""
    ratings = tuple(
        (name, 0.9 if name == rating else 0.03) for name in ("general", "sensitive", "questionable", "explicit")
    )
    confident = (("1girl", 0.98), ("solo", 0.95), ("long hair", 0.9), ("smile", 0.7), ("hat \\(object\\)", 0.5))
    general = (*confident, *((f"tag {i}", 0.49 - i / 100) for i in range(9)))
    return Description(ratings, general, (("hatsune miku", 0.93),), tagger, (("blush", 0.3),))


@dataclass
class FakeExecutor:
    """Queued -> Started -> Progress x steps -> Finished, instantly unless `hold` is cleared.

    `fail_prompts`: prompts that end in Failed. `full`: refuse every submit with QueueFullError. `paused`: jobs
    stay queued until cancelled (a GPU busy until the process stops).
    """

    max_queued_total: int = 50
    full: bool = False
    paused: bool = False
    fail_prompts: set[str] = field(default_factory=set)
    hold: asyncio.Event | None = None  # when set: jobs wait after Started until it is set (or cancelled)
    eta_seconds: float | None = None  # what the Queued event says about when the job will be done
    rating: str = "general"  # what a describe job's tagger rates every image
    submitted: list[Job] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    _cancel_events: dict[str, asyncio.Event] = field(default_factory=dict)

    async def submit(self, job: Job) -> Ticket:
        if self.full or len(self.running) >= self.max_queued_total:
            raise QueueFullError("The queue is full; try again when a job finishes.")
        by_id = {other.job_id: other for other in self.submitted}
        mine = sum(1 for job_id in self.running if by_id[job_id].user_id == job.user_id)
        if job.max_queued is not None and mine >= job.max_queued:
            raise QueueFullError(f"You already have {mine} job(s) waiting or running (the limit here is {mine}).")
        self.submitted.append(job)
        self.running.add(job.job_id)
        self._cancel_events[job.job_id] = asyncio.Event()
        return Ticket(job, self._events(job))

    async def _events(self, job: Job) -> AsyncIterator[JobEvent]:
        params = job.params
        try:
            yield Queued(position=1, ahead=len(self.running) - 1, eta_seconds=self.eta_seconds)
            cancel = self._cancel_events[job.job_id]
            if self.paused:
                await cancel.wait()
                yield WasCancelled()
                return
            yield Started()
            if self.hold is not None:
                hold_task = asyncio.ensure_future(self.hold.wait())
                cancel_task = asyncio.ensure_future(cancel.wait())
                await asyncio.wait({hold_task, cancel_task}, return_when=asyncio.FIRST_COMPLETED)
                hold_task.cancel()
                cancel_task.cancel()
            for step in range(1, params.steps + 1):
                if cancel.is_set():
                    yield WasCancelled()
                    return
                yield Progress(step, params.steps)
            if params.prompt in self.fail_prompts:
                yield Failed(GenerationFailedError("Out of memory at this size; try 512x512."))
                return
            found = fake_description(self.rating, str(params.tagger)) if params.is_describe else None
            images = tuple(
                GeneratedImage(
                    png=tiny_png(params.width, params.height, seed),
                    seed=seed,
                    infotext=found.prompt() if found is not None else fake_infotext(params, seed),
                    width=params.width,
                    height=params.height,
                    description=found,
                )
                for seed in params.image_seeds()
            )
            yield Finished(JobResult(images=images, infotext=images[0].infotext, seconds=0.25))
        finally:
            self.running.discard(job.job_id)

    async def start(self) -> None:
        pass

    def loaded_models(self) -> list[str]:
        return []

    def worker_lines(self) -> list[str] | None:
        return None

    def cancel(self, job_id: str) -> bool:
        if job_id not in self.running:
            return False
        self.cancelled.add(job_id)
        self._cancel_events[job_id].set()
        return True

    def position(self, job_id: str) -> int | None:
        return 0 if job_id in self.running else None

    async def close(self) -> None:
        """Stop as the real executor does: every job still open ends in WasCancelled."""
        for job_id in list(self.running):
            self._cancel_events[job_id].set()


@dataclass(frozen=True)
class FakeEntry:
    name: str
    kind: str = "diffusers"
    path: Path | None = None
    refused: str | None = None
    family: str = "sd1"


@dataclass
class FakeRegistry:
    """A registry over fixed entries; `rescanned` holds what the next refresh() finds."""

    entries_: list[FakeEntry] = field(
        default_factory=lambda: [
            FakeEntry("builtin:tiny", "builtin"),
            FakeEntry("anime-v3"),
            FakeEntry("photo-xl", family="sdxl"),
            FakeEntry("old-model", "single-file", refused="pickle checkpoint (.ckpt); convert it to .safetensors"),
        ]
    )
    rescanned: list[FakeEntry] | None = None
    broken: bool = False  # resolve() raises an unexpected error (a bug, not an EaselError)
    defaults: ModelDefaults = field(default_factory=lambda: ModelDefaults(width=64, height=64, steps=4))

    def refresh(self) -> None:
        if self.rescanned is not None:
            self.entries_ = self.rescanned

    def entries(self) -> list[FakeEntry]:
        return list(self.entries_)

    def names(self) -> list[str]:
        return [e.name for e in self.entries_ if e.refused is None]

    def resolve(self, name: str) -> FakeEntry:
        if self.broken:
            raise RuntimeError("registry bug")
        for entry in self.entries_:
            if entry.name == name:
                if entry.refused:
                    raise ModelUnavailableError(f"Model {name!r} is refused: {entry.refused}.")
                return entry
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelUnavailableError(f"No model called {name!r}.{hint}")

    def default_model(self, configured: str | None) -> str:
        if configured and configured in self.names():
            return configured
        return self.names()[0]

    def defaults_for(self, name: str) -> ModelDefaults:
        return self.defaults

    def match(self, hint: ModelHint) -> str | None:
        """By name only (the fakes have no files to hash), as the registry does for a hash it does not know."""
        return next((e.name for e in self.entries_ if e.refused is None and e.name == hint.name), None)

    def traits(self, name: str) -> ModelTraits:
        family = next((e.family for e in self.entries_ if e.name == name), "sd1")
        return ModelTraits(family=family)

    def layer_shapes(self, name: str) -> LayerShapes | None:
        return None


@dataclass(frozen=True)
class FakeLora:
    name: str
    short_hash: str | None = "0123456789ab"
    trigger_words: tuple[str, ...] = ()
    base_model: str | None = "sd_v1"
    family: str | None = "sd1"
    refused: str | None = None


@dataclass(frozen=True)
class FakeEmbedding:
    name: str
    vectors: int | None = 1
    refused: str | None = None
    family: str | None = "sd1"


@dataclass(frozen=True)
class FakeVae:
    name: str
    family: str | None = None


@dataclass(frozen=True)
class FakeUpscaler:
    name: str
    label: str = "ESRGAN ×4"
    refused: str | None = None


@dataclass
class FakeNetworks:
    """A LoRA/embedding catalog over fixed entries; `rescanned` holds what the next refresh() finds. Names resolve
    and prompts are checked by the engine's rules (case forgiven, closest names on a miss)."""

    loras_: list[FakeLora] = field(
        default_factory=lambda: [
            FakeLora("green", "a1b2c3d4e5f6", ("green", "shape")),
            FakeLora("add-detail", "0f0f0f0f0f0f", (), "sd_v1"),
            FakeLora("anime-lineart", "123456789abc", ("lineart", "monochrome"), "sdxl_base_v1-0", "sdxl"),
            FakeLora("more-details", None, (), None, None),
        ]
    )
    embeddings_: list[FakeEmbedding] = field(
        default_factory=lambda: [
            FakeEmbedding("EasyNegative", 8),
            FakeEmbedding("bad-hands-xl", None, "it is an SDXL embedding, its vectors are 2048 wide", "sdxl"),
        ]
    )
    vaes_: list[FakeVae] = field(
        default_factory=lambda: [
            FakeVae("vae-ft-mse-840000-ema-pruned.safetensors", "sd1"),
            FakeVae("sdxl_vae.safetensors", "sdxl"),
            FakeVae("clearvae.safetensors"),
        ]
    )
    upscalers_: list[str] = field(default_factory=lambda: ["4x-UltraSharp", "RealESRGAN_x4plus_anime_6B"])
    detectors_: list[str] = field(default_factory=lambda: ["face_yolov8n", "hand_yolov8n"])
    taggers_: list[str] = field(default_factory=lambda: ["wd-vit-tagger-v3"])
    rescanned: tuple[list[FakeLora], list[FakeEmbedding]] | None = None
    refreshes: int = 0

    def upscaler_names(self) -> list[str]:
        return sorted(self.upscalers_)

    def upscalers(self) -> list[FakeUpscaler]:
        return [FakeUpscaler(name) for name in self.upscaler_names()] + [
            FakeUpscaler("RealESRGAN_x4plus", "refused", "a .pt file may be a TorchScript program")
        ]

    def resolve_upscaler(self, name: str) -> str:
        standard = {"R-ESRGAN 4x+ Anime6B": "RealESRGAN_x4plus_anime_6B"}
        for upscaler in self.upscalers_:
            if upscaler.lower() == name.strip().lower():
                return upscaler
            if standard.get(name.strip()) == upscaler:
                return name.strip()
        raise InvalidParamsError(f"Unknown upscaler {name!r}.")

    def tagger_names(self) -> list[str]:
        return sorted(self.taggers_)

    def taggers(self) -> list[FakeUpscaler]:
        return [FakeUpscaler(name, "WD14 tagger, 448 px, 10,861 tags") for name in self.tagger_names()]

    def resolve_tagger(self, name: str | None) -> str:
        if name is None:
            if not self.taggers_:
                raise InvalidParamsError("No tagger is installed here.")
            return sorted(self.taggers_)[0]
        for tagger in self.taggers_:
            if tagger.lower() == name.strip().lower():
                return tagger
        raise InvalidParamsError(f"Unknown tagger {name!r}.")

    def detector_names(self) -> list[str]:
        return sorted(self.detectors_)

    def detectors(self) -> list[FakeUpscaler]:
        return [FakeUpscaler(name, "YOLOv8 detection, 1 class") for name in self.detector_names()] + [
            FakeUpscaler("eyes_yolov8n", "refused", "an ultralytics pickle, which can run code when loaded")
        ]

    def has_detector(self, name: str) -> bool:
        return detector_stem(name).lower() in {d.lower() for d in self.detectors_}

    def resolve_detector(self, name: str) -> str:
        for detector in self.detectors_:
            if detector.lower() == detector_stem(name).lower():
                return detector
        raise InvalidParamsError(f"Unknown detector {name!r}.")

    def refused_loras(self) -> int:
        return 0

    def lora_names(self) -> list[str]:
        return sorted(lora.name for lora in self.loras_)

    def resolve_lora(self, name: str) -> str:
        for lora in self.loras_:
            if lora.name.lower() == name.strip().lower():
                return lora.name
        close = difflib.get_close_matches(name, self.lora_names(), n=3, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise InvalidParamsError(f"Unknown LoRA {name!r}.{hint}")

    def check_prompt(self, *prompts: str, traits: ModelTraits | None = None, layers: LayerShapes | None = None) -> None:
        for prompt in prompts:
            for call in read_loras(prompt)[1]:
                name = self.resolve_lora(call.name)
                family = next(lora.family for lora in self.loras_ if lora.name == name)
                if traits is not None and family is not None and family != traits.family:
                    raise InvalidParamsError(f"LoRA {name!r} was made for {family}, and this model is {traits.family}.")

    def vae_names(self, family: str | None = None) -> list[str]:
        return sorted(v.name for v in self.vaes_ if family is None or v.family in (None, family))

    def resolve_vae(self, name: str, family: str) -> str:
        for vae in self.vaes_:
            if name.strip().lower() in (vae.name.lower(), vae.name.lower().removesuffix(".safetensors")):
                if vae.family is not None and vae.family != family:
                    raise InvalidParamsError(f"VAE {vae.name!r} is made for {vae.family} models.")
                return vae.name
        close = difflib.get_close_matches(name, self.vae_names(), n=3, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise InvalidParamsError(f"Unknown VAE {name!r}.{hint}")

    async def loras(self) -> list[FakeLora]:
        return sorted(self.loras_, key=lambda lora: lora.name)

    def embeddings(self) -> list[FakeEmbedding]:
        return list(self.embeddings_)

    async def refresh(self) -> None:
        self.refreshes += 1
        if self.rescanned is not None:
            self.loras_, self.embeddings_ = self.rescanned
