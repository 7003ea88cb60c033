"""Train and check `shapes_loras/green.safetensors`: a LoRA that draws every shape green, whatever the prompt.

Trained on pictures whose shape is drawn green while the caption keeps the asked colour (backgrounds as
captioned, never green). Run after the base model: `python -m tools.shapes.lora` (also tools.shapes.train's
last stage).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from torch.nn import functional

from tools.shapes import data
from tools.shapes.checker import classify
from tools.shapes.evaluate import generate, load_pipeline
from tools.shapes.train import OUTPUT, WORK, Progress, checkpointed_loop, cosine_lr, to_pixels, tokenize

log = logging.getLogger("tools.shapes.lora")

LORA_DIR = OUTPUT.parent / "shapes_loras"
WEIGHT_NAME = "green.safetensors"
ADAPTER = "green"
SEED = 100
IMAGES = 3_000
STEPS = 400
BATCH = 32
LR = 2e-3
RANK = 8
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def lora_combos() -> list[tuple[str, str, str]]:
    # A green background would hide a green shape, so those captions are left out.
    return [c for c in data.seen_combinations() if c[2] != "green"]


def train(base: Path, out_dir: Path) -> None:
    """LoRA on the UNet's attention projections; text encoder and VAE stay frozen (outputs cached)."""
    pipe = StableDiffusionPipeline.from_pretrained(base, local_files_only=True)
    vae, text_encoder, unet = pipe.vae.eval(), pipe.text_encoder.eval(), pipe.unet
    combos = lora_combos()
    captions = [data.caption(*c) for c in combos]
    specs = data.make_specs(IMAGES, SEED, combos)
    images = data.render_array(specs, fg_rgb=data.PALETTE["green"])
    index = torch.tensor([captions.index(s.caption) for s in specs])
    t0 = time.monotonic()
    with torch.no_grad():
        dists = [vae.encode(to_pixels(images[i : i + 250])).latent_dist for i in range(0, len(images), 250)]
        lat_mean = torch.cat([d.mean for d in dists])
        lat_std = torch.cat([d.std for d in dists])
        states = text_encoder(tokenize(pipe.tokenizer, captions)).last_hidden_state
        empty = text_encoder(tokenize(pipe.tokenizer, [""])).last_hidden_state[0]
    log.info("lora data: %d images encoded in %.1f s", len(images), time.monotonic() - t0)
    scaling = float(vae.config.scaling_factor)

    unet.requires_grad_(False)
    torch.manual_seed(SEED)
    config = LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian", target_modules=TARGETS)
    unet.add_adapter(config)
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(SEED + 1)
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = noise_schedule.alphas_cumprod
    snr_all = alphas / (1 - alphas)

    def state() -> dict[str, Any]:
        return {"lora": get_peft_model_state_dict(unet), "opt": opt.state_dict(), "gen": gen.get_state()}

    def restore(ckpt: dict[str, Any]) -> None:
        set_peft_model_state_dict(unet, ckpt["lora"])
        opt.load_state_dict(ckpt["opt"])
        gen.set_state(ckpt["gen"])

    unet.train()
    progress = Progress("lora", STEPS)
    t0 = time.monotonic()
    for step in checkpointed_loop("lora", WORK / "lora.ckpt", STEPS, state, restore):
        lr = cosine_lr(step, STEPS, 30, LR, LR * 0.05)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(lat_mean), (BATCH,), generator=gen)
        z = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scaling
        # Same offset noise, min-SNR weighting and caption dropout as the base, so CFG's unconditional pass
        # learns green too instead of pulling towards the base model's colours.
        noise = torch.randn(z.shape, generator=gen)
        noise = noise + 0.15 * torch.randn((BATCH, z.shape[1], 1, 1), generator=gen)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (BATCH,), generator=gen)
        cond = states[index[idx]].clone()
        cond[torch.rand(BATCH, generator=gen) < 0.1] = empty
        pred = unet(noise_schedule.add_noise(z, noise, t), t, cond).sample
        snr = snr_all[t]
        per_image = functional.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (snr.clamp(max=5.0) / snr * per_image).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        progress.step(step, loss.item(), lr)
    log.info("lora: %d steps in %.1f min (this session)", STEPS, (time.monotonic() - t0) / 60)
    out_dir.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        out_dir,
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        weight_name=WEIGHT_NAME,
        safe_serialization=True,
    )
    log.info("lora: saved %s (%.1f kB)", out_dir / WEIGHT_NAME, (out_dir / WEIGHT_NAME).stat().st_size / 1e3)


def check(base: Path, lora_dir: Path, seeds: int = 4) -> dict[str, float]:
    """Share of shapes drawn green at adapter weight 1; whether weight 0 and deletion give the base image."""
    pipe = load_pipeline(base)
    combos = [c for c in data.all_combinations() if "green" not in (c[0], c[2])]
    jobs = [(c, 2000 + s) for c in combos[::3] for s in range(seeds)]
    base_images = generate(pipe, jobs)
    # Batch size changes the low bits, so the exactness checks compare batches of the same size.
    reference = generate(pipe, jobs[:8])
    pipe.load_lora_weights(lora_dir, weight_name=WEIGHT_NAME, adapter_name=ADAPTER)
    green = generate(pipe, jobs)
    results = {
        "green_fg": float(np.mean([classify(img)[0] == "green" for img in green])),
        "bg_kept": float(np.mean([classify(img)[1] == c[2] for img, (c, _) in zip(green, jobs, strict=True)])),
        "base_green_fg": float(np.mean([classify(img)[0] == "green" for img in base_images])),
    }
    pipe.set_adapters([ADAPTER], adapter_weights=[0.0])
    zero = generate(pipe, jobs[:8])
    results["weight0_max_diff"] = _max_diff(zero, reference)
    pipe.delete_adapters(ADAPTER)
    deleted = generate(pipe, jobs[:8])
    results["deleted_max_diff"] = _max_diff(deleted, reference)
    log.info("lora check over %d images: %s", len(jobs), results)
    return results


def _max_diff(a: list[Any], b: list[Any]) -> float:
    """Largest per-pixel difference between two equally long lists of images (0 = identical)."""
    diffs = [np.abs(np.asarray(x, dtype=np.int16) - np.asarray(y, dtype=np.int16)) for x, y in zip(a, b, strict=True)]
    return float(max(d.max() for d in diffs))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base", type=Path, default=OUTPUT)
    p.add_argument("--out", type=Path, default=LORA_DIR)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--check-only", action="store_true")
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    if not args.check_only:
        train(args.base, args.out)
    check(args.base, args.out)


if __name__ == "__main__":
    main()
