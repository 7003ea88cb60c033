"""Settings, read once at start-up from EASEL_* variables or `.env`; a bad value is one clear line, exit code 2."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DISCORD_API_URL = "https://discord.com/api/v10"
DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"

IdList = Annotated[list[int], NoDecode]
SECRET_SETTINGS = frozenset({"discord_token", "redis_url"})  # never echoed, not even when malformed


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it and says what is expected."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EASEL_", env_file=".env", extra="ignore", frozen=True)

    discord_token: SecretStr | None = None
    discord_api_url: str = DISCORD_API_URL
    discord_gateway_url: str = DISCORD_GATEWAY_URL
    dev_guild_id: int | None = None
    admin_user_ids: IdList = Field(default_factory=list)
    admin_role_ids: IdList = Field(default_factory=list)

    default_model: str | None = None
    models_dir: Path = Path("models")
    loras_dir: Path | None = None  # default: <models_dir>/Lora
    data_dir: Path = Path("data")
    allow_ckpt: bool = False  # pickle checkpoints can run code; only an admin who trusts the files sets this
    device: str = "auto"  # or a comma-separated list, one worker each: cuda:0,cuda:1
    embeddings_dir: Path | None = None  # default: <models_dir>/embeddings
    vae_dir: Path | None = None  # default: <models_dir>/VAE
    # Flux's text encoders (clip_l, t5xxl: Forge's "VAE / Text Encoder" modules; the ae goes in the VAE folder);
    # default: <models_dir>/text_encoder.
    text_encoder_dir: Path | None = None
    # Upscaler models (.safetensors, .pth); default: A1111's <models_dir>/ESRGAN, RealESRGAN, DAT, SwinIR and HAT
    # folders and ComfyUI's upscale_models, all read.
    upscaler_dir: Path | None = None
    # Detectors for the detailer (.safetensors YOLOv8, .onnx); default: A1111's <models_dir>/adetailer.
    detector_dir: Path | None = None
    # Taggers for /describe (a folder each: model.onnx + selected_tags.csv); default: <models_dir>/tagger.
    tagger_dir: Path | None = None
    # Pipelines kept in memory per device (least recently used out first); with a budget, also no more than fit.
    max_loaded_models: int = Field(default=2, ge=1, le=16)
    model_memory_mb: int | None = Field(default=None, ge=256)
    # A1111's RNG source. GPU (A1111's default) gives NVIDIA's numbers on any host (see engine/seeds.py), so
    # seeds copied from civitai reproduce; CPU gives torch's CPU numbers; NV is A1111's explicit Philox source.
    rng: str = "GPU"
    previews: bool = True  # a small live preview on the progress message (EASEL_PREVIEWS=false turns it off)

    max_steps: int = Field(default=150, ge=1, le=1000)
    max_pixels: int = Field(default=1024 * 1024, ge=64 * 64)
    # The final size after hires fix (and the Upscale button): 1024x1024 x2 fits, as on a 24 GB card in A1111.
    max_hires_pixels: int = Field(default=2048 * 2048, ge=64 * 64)
    max_batch: int = Field(default=4, ge=1, le=16)
    max_queued_per_user: int = Field(default=3, ge=1)
    # Work ceilings, in units of one 512x512 step with CFG (the plan's cost): a 150-step SDXL batch of 4 at
    # 1024x1024 with hires x2 is 12,000 (24,000 with a second-order sampler such as Heun or DPM++ 2S a).
    max_job_cost: float = Field(default=25_000, gt=0)
    max_user_cost: float = Field(default=75_000, gt=0)
    max_queued_total: int = Field(default=50, ge=1)
    # Compatible waiting jobs (same model, size, steps, sampler...) run as one batch of up to this many images.
    max_batch_images: int = Field(default=4, ge=1, le=64)
    # Speed options (see engine/speed.py and `python -m bench`): none changes what an image is.
    dtype: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: str = "off"  # off, unet, unet+vae (torch.compile for the sizes below, warmed up at start-up)
    compile_mode: str = "default"  # default, cudagraphs (CUDA graphs per bucketed shape), max-autotune
    # Flux.1 on the GPU: "resident" (every part stays on the GPU: 24 GB+ with fp8 or GGUF Q8) or "offload" (each part
    # moves to the GPU while it runs: 16 GB, or 12 GB with a GGUF Q4 file). `flux_t5_cpu` keeps T5-XXL on the CPU.
    flux_memory: str = "resident"
    flux_t5_cpu: bool = False
    compile_sizes: str = "512x512,768x768,1024x1024,832x1216,1216x832,896x1152,1152x896"
    log_level: str = "INFO"
    allow_dms: bool = True  # draw in DMs (with the config's limits); false: only on servers
    # What happens to a prompt with a listed NSFW word outside age-restricted channels (and in DMs) on servers that
    # have not chosen: refuse, spoiler (post it behind a spoiler) or allow. Servers choose with /nsfw set.
    nsfw_outside: str = "refuse"
    # Where members can get this bot's source (the AGPL asks a network service to offer it); shown by /about.
    source_url: str | None = None
    # GPU workers on other machines (see the README): the bot hands jobs to `python main.py worker` processes through
    # this Redis (redis://user:password@host:6379/0; rediss:// for TLS). Unset: the in-process workers, no Redis.
    redis_url: SecretStr | None = None
    worker_name: str | None = None  # a worker's name (default: this machine's host name and the process id)
    worker_timeout: float = Field(default=15.0, ge=2.0, le=600.0)  # seconds of silence before a worker's jobs move
    missing_model: str = "wait"  # a job whose model no connected worker has: wait (saying so) or refuse

    @field_validator("missing_model")
    @classmethod
    def _check_missing(cls, value: str) -> str:
        if value not in ("wait", "refuse"):
            raise ValueError("must be wait or refuse")
        return value

    @field_validator("worker_name")
    @classmethod
    def _check_worker_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\w.@-]{1,64}", value):
            raise ValueError("letters, digits and . _ - @ only, at most 64")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"^(redis|rediss|unix)://", value.get_secret_value()):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("nsfw_outside")
    @classmethod
    def _check_nsfw(cls, value: str) -> str:
        if value not in ("refuse", "spoiler", "allow"):
            raise ValueError("must be refuse, spoiler or allow")
        return value

    @field_validator("admin_user_ids", "admin_role_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p for p in re.split(r"[,\s]+", value.strip()) if p]
            if not all(p.isdigit() for p in parts):
                raise ValueError("expected Discord ids (digits) separated by commas")
            return [int(p) for p in parts]
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        devices = [d.strip() for d in value.split(",")]
        if not all(re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", d) for d in devices):
            raise ValueError("expected auto, cpu, cuda, cuda:N or mps, or a comma-separated list such as cuda:0,cuda:1")
        if len(devices) > 1 and "auto" in devices:
            raise ValueError("auto already means every CUDA device; list devices or say auto, not both")
        if len(set(devices)) != len(devices):
            raise ValueError("a device is listed twice; one worker per device")
        return ",".join(devices)

    @field_validator("dtype")
    @classmethod
    def _check_dtype(cls, value: str) -> str:
        if value.lower() not in {"auto", "fp32", "fp16", "bf16"}:
            raise ValueError("expected auto, fp32, fp16 or bf16")
        return value.lower()

    @field_validator("compile")
    @classmethod
    def _check_compile(cls, value: str) -> str:
        if value.lower() not in {"off", "unet", "unet+vae"}:
            raise ValueError("expected off, unet or unet+vae")
        return value.lower()

    @field_validator("compile_mode")
    @classmethod
    def _check_compile_mode(cls, value: str) -> str:
        if value.lower() not in {"default", "cudagraphs", "max-autotune"}:
            raise ValueError("expected default, cudagraphs or max-autotune")
        return value.lower()

    @field_validator("flux_memory")
    @classmethod
    def _check_flux_memory(cls, value: str) -> str:
        if value.lower() not in {"resident", "offload"}:
            raise ValueError("expected resident or offload")
        return value.lower()

    @field_validator("compile_sizes")
    @classmethod
    def _check_sizes(cls, value: str) -> str:
        sizes = [part.strip() for part in value.split(",") if part.strip()]
        if not sizes or not all(re.fullmatch(r"\d{2,5}x\d{2,5}", size) for size in sizes):
            raise ValueError("expected sizes like 512x512,1024x1024")
        if any(int(side) % 8 for size in sizes for side in size.split("x")):
            raise ValueError("every side must be a multiple of 8")
        return ",".join(sizes)

    @field_validator("discord_api_url", "discord_gateway_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^(https?|wss?)://[^\s/]+", value):
            raise ValueError("expected an http(s):// or ws(s):// URL")
        return value.rstrip("/")

    @field_validator("rng")
    @classmethod
    def _check_rng(cls, value: str) -> str:
        if value.upper() not in {"GPU", "CPU", "NV"}:
            raise ValueError("expected GPU, CPU or NV")
        return value.upper()

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @property
    def devices(self) -> list[str]:
        """One entry per worker (`auto` stays one entry: the engine expands it to every CUDA device it sees)."""
        return self.device.split(",")

    @property
    def compile_size_list(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(w), int(h)) for w, h in (size.split("x") for size in self.compile_sizes.split(",")))

    @property
    def lora_dir(self) -> Path:
        return self.loras_dir if self.loras_dir is not None else self.models_dir / "Lora"

    @property
    def vae_folder(self) -> Path:
        return self.vae_dir if self.vae_dir is not None else self.models_dir / "VAE"

    @property
    def flux_module_folders(self) -> list[Path]:
        """Where a Flux transformer's ae, clip_l and t5xxl are looked for: the VAE and text encoder folders."""
        text = self.text_encoder_dir if self.text_encoder_dir is not None else self.models_dir / "text_encoder"
        return [self.vae_folder, text]

    @property
    def upscaler_folders(self) -> list[Path]:
        if self.upscaler_dir is not None:
            return [self.upscaler_dir]
        return [self.models_dir / name for name in UPSCALER_FOLDERS]

    @property
    def detector_folders(self) -> list[Path]:
        return [self.detector_dir if self.detector_dir is not None else self.models_dir / "adetailer"]

    @property
    def tagger_folders(self) -> list[Path]:
        return [self.tagger_dir if self.tagger_dir is not None else self.models_dir / "tagger"]

    @property
    def embedding_dir(self) -> Path:
        return self.embeddings_dir if self.embeddings_dir is not None else self.models_dir / "embeddings"


UPSCALER_FOLDERS = ("ESRGAN", "RealESRGAN", "DAT", "SwinIR", "HAT", "upscale_models")


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning pydantic's report into one line that names the EASEL_ variable."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        field = "_".join(str(p) for p in first["loc"][:1])
        got = "its value not shown: it is secret" if field in SECRET_SETTINGS else f"got {first.get('input')!r}"
        raise SettingsError(f"EASEL_{field.upper()}: {first['msg']} ({got})") from None
