"""Regenerate the shapes dataset and train `builtin:shapes` tokenizer, VAE, text encoder + UNet, LoRA.

Run `python -m tools.shapes.train`; every stage is seeded, caches its output in tools/shapes/work/ and resumes
from its last checkpoint, so rerunning after a stop continues where it left off.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from torch.nn import functional
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from tools.shapes import data
from tools.shapes.tokenizer import BOS, EOS, MAX_LENGTH, write_tokenizer

log = logging.getLogger("tools.shapes.train")

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(__file__).resolve().parent / "work"
OUTPUT = ROOT / "engine" / "data" / "builtin" / "shapes"

# SD 1.5's scheduler config, so the model samples with SD's own noise schedule and any SD sampler.
SD15_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    # PNDM ignores it, but DDIM built with from_config would otherwise clip x0 to [-1, 1] and draw noise.
    "clip_sample": False,
}
CHECKPOINT_EVERY_S = 180.0


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run; defaults were sized so the whole run fits about 55 minutes on 1 CPU thread."""

    seed: int = 0
    images: int = 20_000
    vae_steps: int = 900
    vae_batch: int = 32
    vae_lr: float = 2e-3
    unet_steps: int = 2_600
    unet_batch: int = 64
    unet_lr: float = 1e-3
    unet_min_lr: float = 1e-4
    unet_warmup: int = 300
    weight_decay: float = 0.01
    min_snr: float = 5.0
    caption_dropout: float = 0.1
    # Essential: without it the colours come from the noise's mean, not the prompt (see shapes-recipe.md).
    noise_offset: float = 0.15
    ema_decay: float = 0.999
    threads: int = 1


# ---------------------------------------------------------------------------------------------------- models


def make_vae() -> AutoencoderKL:
    """A ×4 VAE (64×64 → 4×16×16) with SD's architecture, just narrower."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=data.SIZE,
    )


def make_text_encoder(vocab: dict[str, int]) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        hidden_act="quick_gelu",
        projection_dim=64,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
    )
    return CLIPTextModel(config)


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
    )


def make_scheduler() -> PNDMScheduler:
    # from_config (not the constructor) keeps clip_sample in the saved config, as in SD 1.5's own file.
    return PNDMScheduler.from_config(SD15_SCHEDULER)


# ---------------------------------------------------------------------------------------------------- helpers


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save through a temp file so a kill mid-write never leaves a truncated checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cosine_lr(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [-1, 1], the range SD's VAE works in."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class Progress:
    """Logs a line every `every` steps with the mean loss and seconds per step since the last line."""

    def __init__(self, name: str, total: int, every: int = 25) -> None:
        self.name, self.total, self.every = name, total, every
        self.losses: list[float] = []
        self.t0 = time.monotonic()

    def step(self, step: int, loss: float, lr: float) -> None:
        self.losses.append(loss)
        if (step + 1) % self.every == 0 or step + 1 == self.total:
            dt = (time.monotonic() - self.t0) / len(self.losses)
            eta = dt * (self.total - step - 1) / 60
            log.info(
                "%s step %d/%d loss %.4f lr %.2e %.2f s/step eta %.1f min",
                self.name, step + 1, self.total, float(np.mean(self.losses)), lr, dt, eta,
            )  # fmt: skip
            self.losses.clear()
            self.t0 = time.monotonic()


def checkpointed_loop(
    name: str,
    path: Path,
    total: int,
    state: Callable[[], dict[str, Any]],
    restore: Callable[[dict[str, Any]], None],
) -> Iterator[int]:
    """Yield the steps still to run, resuming from `path`; checkpoint every few minutes and at the end."""
    start = 0
    if path.exists():
        ckpt = torch.load(path, weights_only=False)
        restore(ckpt)
        start = int(ckpt["step"])
        log.info("%s: resuming at step %d/%d from %s", name, start, total, path)
    last = time.monotonic()
    for step in range(start, total):
        yield step
        if time.monotonic() - last > CHECKPOINT_EVERY_S or step + 1 == total:
            save_atomic({**state(), "step": step + 1}, path)
            last = time.monotonic()


# ---------------------------------------------------------------------------------------------------- stages


def build_dataset(cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, 64, 64, 3) uint8, each image's caption index, and the captions (seen combinations only)."""
    path = WORK / "dataset.npz"
    combos = data.seen_combinations()
    captions = [data.caption(*c) for c in combos]
    if path.exists():
        cached = np.load(path)
        return cached["images"], cached["caption_index"], captions
    t0 = time.monotonic()
    specs = data.make_specs(cfg.images, cfg.seed, combos)
    images = data.render_array(specs)
    index = np.array([captions.index(s.caption) for s in specs], dtype=np.int64)
    np.savez(path, images=images, caption_index=index)
    elapsed = time.monotonic() - t0
    log.info("dataset: %d images of %d combinations in %.1f s", len(specs), len(combos), elapsed)
    return images, index, captions


def train_vae(cfg: TrainConfig, images: np.ndarray) -> AutoencoderKL:
    """MSE + 1e-6·KL; 32×32 crops for the first 80% (cheaper, same receptive field), then whole images."""
    out = WORK / "vae"
    if (out / "config.json").exists():
        return AutoencoderKL.from_pretrained(out)
    torch.manual_seed(cfg.seed)
    vae = make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    def state() -> dict[str, Any]:
        return {"model": vae.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()}

    def restore(ckpt: dict[str, Any]) -> None:
        vae.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        gen.set_state(ckpt["gen"])

    t0 = time.monotonic()
    progress = Progress("vae", cfg.vae_steps)
    vae.train()
    for step in checkpointed_loop("vae", WORK / "vae.ckpt", cfg.vae_steps, state, restore):
        lr = cosine_lr(step, cfg.vae_steps, 50, cfg.vae_lr, cfg.vae_lr * 0.02)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(images), (cfg.vae_batch,), generator=gen).numpy()
        x = to_pixels(images[idx])
        if step < 0.8 * cfg.vae_steps:
            ox, oy = (int(v) for v in torch.randint(0, data.SIZE - 32 + 1, (2,), generator=gen))
            x = x[:, :, oy : oy + 32, ox : ox + 32]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        loss = functional.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        progress.step(step, loss.item(), lr)
    vae.eval()
    with torch.no_grad():
        x = to_pixels(images[:256])
        mse = functional.mse_loss(vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1), x).item()
    log.info("vae: trained in %.1f min, PSNR %.1f dB on 256 images", (time.monotonic() - t0) / 60,
             10 * math.log10(4 / mse))  # fmt: skip
    vae.save_pretrained(out)
    return vae


def encode_latents(cfg: TrainConfig, vae: AutoencoderKL, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Cache each image's posterior mean and std (resampled every UNet step); set the VAE's scaling factor."""
    path = WORK / "latents.pt"
    if path.exists():
        cached = torch.load(path)
        vae.register_to_config(scaling_factor=float(cached["scaling_factor"]))
        return cached["mean"], cached["std"]
    t0 = time.monotonic()
    means, stds = [], []
    vae.eval()
    with torch.no_grad():
        for i in range(0, len(images), 250):
            dist = vae.encode(to_pixels(images[i : i + 250])).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
    mean, std = torch.cat(means), torch.cat(stds)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    sample = mean + std * torch.randn(mean.shape, generator=gen)
    # SD's convention: scaled latents have unit variance, so the noise schedule means what it says.
    scaling = 1.0 / float(sample.std())
    vae.register_to_config(scaling_factor=scaling)
    save_atomic({"mean": mean, "std": std, "scaling_factor": scaling}, path)
    elapsed = time.monotonic() - t0
    log.info("latents: %s encoded in %.1f s, scaling_factor %.4f", tuple(mean.shape), elapsed, scaling)
    return mean, std


def tokenize(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    encoded = tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
    ids: torch.Tensor = encoded.input_ids
    return ids


def train_unet(
    cfg: TrainConfig,
    *,
    tokenizer: CLIPTokenizer,
    latents: tuple[torch.Tensor, torch.Tensor],
    scaling: float,
    caption_index: np.ndarray,
    captions: list[str],
) -> tuple[CLIPTextModel, UNet2DConditionModel]:
    """Joint text encoder + UNet training on cached latents; returns the EMA weights, which are what ships."""
    out = WORK / "unet_ema.pt"
    torch.manual_seed(cfg.seed + 4)
    text_encoder = make_text_encoder(tokenizer.get_vocab())
    unet = make_unet()
    if out.exists():
        final = torch.load(out)
        text_encoder.load_state_dict(final["text_encoder"])
        unet.load_state_dict(final["unet"])
        return text_encoder, unet

    params = [*text_encoder.parameters(), *unet.parameters()]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 5)
    # Same betas as the shipped PNDM config; DDPM only because it has `add_noise` without sampler state.
    noise_schedule = DDPMScheduler.from_config(make_scheduler().config)
    alphas = noise_schedule.alphas_cumprod
    snr_all = alphas / (1 - alphas)
    caption_ids = tokenize(tokenizer, captions)
    empty_ids = tokenize(tokenizer, [""])[0]
    index = torch.from_numpy(caption_index)
    lat_mean, lat_std = latents

    def state() -> dict[str, Any]:
        return {
            "text_encoder": text_encoder.state_dict(),
            "unet": unet.state_dict(),
            "ema": ema,
            "opt": opt.state_dict(),
            "gen": gen.get_state(),
        }

    def restore(ckpt: dict[str, Any]) -> None:
        text_encoder.load_state_dict(ckpt["text_encoder"])
        unet.load_state_dict(ckpt["unet"])
        for e, saved in zip(ema, ckpt["ema"], strict=True):
            e.copy_(saved)
        opt.load_state_dict(ckpt["opt"])
        gen.set_state(ckpt["gen"])

    t0 = time.monotonic()
    progress = Progress("unet", cfg.unet_steps)
    text_encoder.train()
    unet.train()
    b = cfg.unet_batch
    for step in checkpointed_loop("unet", WORK / "unet.ckpt", cfg.unet_steps, state, restore):
        lr = cosine_lr(step, cfg.unet_steps, cfg.unet_warmup, cfg.unet_lr, cfg.unet_min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(lat_mean), (b,), generator=gen)
        mean, std = lat_mean[idx], lat_std[idx]
        z = (mean + std * torch.randn(mean.shape, generator=gen)) * scaling
        noise = torch.randn(z.shape, generator=gen)
        noise = noise + cfg.noise_offset * torch.randn((b, z.shape[1], 1, 1), generator=gen)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (b,), generator=gen)
        ids = caption_ids[index[idx]].clone()
        ids[torch.rand(b, generator=gen) < cfg.caption_dropout] = empty_ids
        noisy = noise_schedule.add_noise(z, noise, t)
        encoder_states = text_encoder(ids).last_hidden_state
        pred = unet(noisy, t, encoder_states).sample
        snr = snr_all[t]
        weight = snr.clamp(max=cfg.min_snr) / snr
        loss = (weight * functional.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        progress.step(step, loss.item(), lr)
    log.info("unet: %d steps in %.1f min (this session)", cfg.unet_steps, (time.monotonic() - t0) / 60)
    with torch.no_grad():
        for p, e in zip(params, ema, strict=True):
            p.copy_(e)
    save_atomic({"text_encoder": text_encoder.state_dict(), "unet": unet.state_dict()}, out)
    return text_encoder, unet


def export_pipeline(
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    unet: UNet2DConditionModel,
    tokenizer_dir: Path,
    out: Path,
) -> StableDiffusionPipeline:
    """Write the diffusers folder the engine loads, plus a note of the defaults the model was checked with."""
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
        unet=unet.eval(),
        scheduler=make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    # transformers 5 saves only tokenizer.json; add the plain CLIP files so any CLIP loader can read them.
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tokenizer_dir / name, out / "tokenizer" / name)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log.info("pipeline: saved to %s (%.2f MB)", out, total / 1e6)
    write_model_note(out)
    return pipe


def export_checkpoint(out: Path) -> StableDiffusionPipeline:
    """Export the EMA weights of the latest UNet checkpoint, to look at a run while it is still training."""
    ckpt = torch.load(WORK / "unet.ckpt", weights_only=False)
    tokenizer_dir = WORK / "tokenizer"
    text_encoder = make_text_encoder(CLIPTokenizer.from_pretrained(tokenizer_dir).get_vocab())
    unet = make_unet()
    params = [*text_encoder.parameters(), *unet.parameters()]
    with torch.no_grad():
        for p, e in zip(params, ckpt["ema"], strict=True):
            p.copy_(e)
    vae = AutoencoderKL.from_pretrained(WORK / "vae")
    vae.register_to_config(scaling_factor=float(torch.load(WORK / "latents.pt")["scaling_factor"]))
    log.info("preview: EMA weights at step %d", ckpt["step"])
    return export_pipeline(vae, text_encoder, unet, tokenizer_dir, out)


def write_model_note(out: Path) -> None:
    note = {
        "name": "builtin:shapes",
        "architecture": "Stable Diffusion 1.x (tiny)",
        "width": data.SIZE,
        "height": data.SIZE,
        "guidance_scale": 5.0,
        "sampler": "DPM++ 2M",
        "steps": 20,
        "vae_scale_factor": 4,
        "prompt_format": "a {fg} {shape} on a {bg} background",
        "colours": list(data.COLOURS),
        "shapes": list(data.SHAPES),
        "held_out": [data.caption(*c) for c in data.HELD_OUT],
    }
    (out / "shapes.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(
        "# builtin:shapes\n\n"
        "A tiny Stable Diffusion 1.x-architecture model (diffusers layout) trained by\n"
        "`python -m tools.shapes.train` on 64×64 pictures captioned\n"
        "`a {fg} {shape} on a {bg} background`.\n\n"
        "- Colours: " + ", ".join(data.COLOURS) + "; shapes: " + ", ".join(data.SHAPES) + ".\n"
        "- Recommended: 64×64, CFG 5, DPM++ 2M (DPMSolverMultistepScheduler), 20 steps. Euler, Euler a, UniPC,\n"
        "  DDIM and DPM++ 2M Karras are as good; diffusers' default CFG 7.5 is worse, and PLMS/PNDM (the saved\n"
        "  scheduler class, as in SD 1.5) and LMS at 20 steps draw it badly: pass a sampler and CFG explicitly.\n"
        "- The VAE downsamples ×4 (latent 4×16×16): derive `vae_scale_factor` from the VAE config,\n"
        "  never assume 8.\n"
        "- `scheduler/` is SD 1.5's scheduler config; load any SD sampler with `Cls.from_config(...)`.\n"
        "- `shapes.json` holds the same defaults in machine-readable form.\n"
        "- The LoRA `../shapes_loras/green.safetensors` makes every shape green.\n",
        encoding="utf-8",
    )


# ---------------------------------------------------------------------------------------------------- main


def setup_logging() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(WORK / "train.log")):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads (the box is shared)")
    p.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    p.add_argument("--unet-steps", type=int, default=defaults.unet_steps)
    p.add_argument("--unet-batch", type=int, default=defaults.unet_batch)
    p.add_argument("--images", type=int, default=defaults.images, help="dataset size (small for smoke tests)")
    p.add_argument("--skip-lora", action="store_true", help="stop after the base pipeline")
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--preview", type=Path, help="only export the latest UNet checkpoint's EMA weights here")
    args = p.parse_args(argv)
    cfg = TrainConfig(
        threads=args.threads,
        images=args.images,
        vae_steps=args.vae_steps,
        unet_steps=args.unet_steps,
        unet_batch=args.unet_batch,
    )
    return cfg, args


def main(argv: list[str] | None = None) -> None:
    cfg, args = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    if args.preview:
        # A look at a run in progress: keep its lines out of the run's own log.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
        export_checkpoint(args.preview)
        return
    setup_logging()
    log.info("config: %s", cfg)
    t0 = time.monotonic()
    images, caption_index, captions = build_dataset(cfg)
    tokenizer_dir = write_tokenizer(WORK / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    vae = train_vae(cfg, images)
    latents = encode_latents(cfg, vae, images)
    del images  # 245 MB the UNet stage does not need
    text_encoder, unet = train_unet(
        cfg,
        tokenizer=tokenizer,
        latents=latents,
        scaling=vae.config.scaling_factor,
        caption_index=caption_index,
        captions=captions,
    )
    export_pipeline(vae, text_encoder, unet, tokenizer_dir, args.output)
    log.info("base model done in %.1f min (this session)", (time.monotonic() - t0) / 60)
    if not args.skip_lora:
        from tools.shapes import lora

        lora.main(["--threads", str(cfg.threads)])
    log.info("all done in %.1f min (this session)", (time.monotonic() - t0) / 60)


if __name__ == "__main__":
    main()
