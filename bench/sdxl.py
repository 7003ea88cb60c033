"""SDXL at full size with random weights: loading an A1111-layout single file (time, peak RAM) and a few steps at a
small size, Easel's job against a plain diffusers `StableDiffusionXLPipeline` call on the same file, same process
kind, same inputs.

    python -m bench.sdxl [--size 256] [--steps 3] [--file data/bench/sdxl-random.safetensors] [--out bench/sdxl.json]

The file (fp16, 6.9 GB) is built by the benchmark the first time, from the real SDXL configs, and never committed.
Each side loads it in a fresh process (so each peak is its own) in float32 on the CPU (bf16 is slower on CPUs
without native bf16) and makes one image with Euler, CFG 7; the ratio is Easel's time over the plain call's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GIB = 1024**3


class _RandomModule:
    """What `export_single_file` reads of a module (its config and state dict), with random fp16 weights in the
    shapes of a module built on the meta device: no full-size model is ever materialised."""

    def __init__(self, module: Any, seed: int) -> None:
        self.config = module.config
        self._shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        self._seed = seed

    def state_dict(self) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(self._seed)
        out = {}
        for key, shape in self._shapes.items():
            if key.endswith(".bias") or "position_ids" in key:
                out[key] = torch.zeros(shape, dtype=torch.float16)
            elif len(shape) == 1 and ("norm" in key or "ln_" in key):
                out[key] = torch.ones(shape, dtype=torch.float16)
            else:
                out[key] = (torch.randn(shape, generator=generator) * 0.02).to(torch.float16)
        return out


def build(path: Path) -> None:
    """A full-size SDXL checkpoint with random weights, in A1111's single-file layout (via Easel's exporter)."""
    from types import SimpleNamespace

    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.models import configs
    from engine.models.single_file import export_single_file

    def strip(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures", "model_type")}

    with init_empty_weights():
        unet = UNet2DConditionModel(**strip(configs.SDXL_UNET))
        vae = AutoencoderKL(**strip(configs.SDXL_VAE))
        clip_l = CLIPTextModel(CLIPTextConfig(**strip(configs.SDXL_TEXT_ENCODER)))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**strip(configs.SDXL_TEXT_ENCODER_2)))
    pipe = SimpleNamespace(
        unet=_RandomModule(unet, 1),
        vae=_RandomModule(vae, 2),
        text_encoder=_RandomModule(clip_l, 3),
        text_encoder_2=_RandomModule(clip_g, 4),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    export_single_file(pipe, partial)
    partial.rename(path)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # ru_maxrss is in KiB on Linux


def run_easel(file: Path, size: int, steps: int) -> dict[str, float]:
    import tempfile

    from engine.models.registry import ModelRegistry
    from engine.params import GenerationParams
    from engine.pipeline import DiffusersEngine

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        (models / file.name).symlink_to(file.resolve())
        engine = DiffusersEngine(ModelRegistry(models, Path(tmp) / "cache"), "cpu", max_loaded=1)
        started = time.perf_counter()
        engine.load(file.stem)
        load = time.perf_counter() - started
        load_peak = _peak_gib()
        params = GenerationParams(
            prompt="a lighthouse at dusk", model=file.stem, seed=1, steps=steps, sampler="Euler",
            width=size, height=size, cfg_scale=7.0,
        )  # fmt: skip
        started = time.perf_counter()
        engine.generate(params)
        job = time.perf_counter() - started
    return {"load_s": load, "load_peak_gib": load_peak, "job_s": job}


def run_plain(file: Path, size: int, steps: int) -> dict[str, float]:
    import tempfile

    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from engine.models.configs import sdxl_config_folder

    with tempfile.TemporaryDirectory() as tmp:
        config = sdxl_config_folder(Path(tmp))
        started = time.perf_counter()
        pipe = StableDiffusionXLPipeline.from_single_file(
            str(file), config=str(config), local_files_only=True, dtype=torch.float32
        )
        load = time.perf_counter() - started
        load_peak = _peak_gib()
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        started = time.perf_counter()
        with torch.inference_mode():
            pipe(
                prompt="a lighthouse at dusk", num_inference_steps=steps, height=size, width=size, guidance_scale=7.0,
                generator=torch.Generator().manual_seed(1),
            )  # fmt: skip
        job = time.perf_counter() - started
    return {"load_s": load, "load_peak_gib": load_peak, "job_s": job}


def _side(which: str, file: Path, size: int, steps: int) -> dict[str, float]:
    """One side in a fresh process, so its peak memory is its own."""
    code = (
        "import json, sys; from pathlib import Path; import bench.sdxl as b; "
        f"print(json.dumps(b.run_{which}(Path({str(file)!r}), {size}, {steps})))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{which} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--file", type=Path, default=Path("data/bench/sdxl-random.safetensors"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/sdxl.json"))
    args = parser.parse_args()
    if not args.file.exists():
        print(f"building {args.file} (full-size SDXL, random fp16 weights)...", file=sys.stderr)
        started = time.perf_counter()
        build(args.file)
        print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    easel = _side("easel", args.file, args.size, args.steps)
    plain = _side("plain", args.file, args.size, args.steps)
    import torch

    result = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "file_gib": args.file.stat().st_size / GIB,
        "size": args.size,
        "steps": args.steps,
        "easel": easel,
        "diffusers": plain,
        "job_ratio": easel["job_s"] / plain["job_s"],
        "load_ratio": easel["load_s"] / plain["load_s"],
    }
    print(f"SDXL single file, {result['file_gib']:.2f} GiB fp16, loaded in float32 on the CPU")
    print(f"{'':10} {'load s':>8} {'peak GiB':>9} {'job s':>8}")
    for name, side in (("Easel", easel), ("diffusers", plain)):
        print(f"{name:10} {side['load_s']:8.1f} {side['load_peak_gib']:9.2f} {side['job_s']:8.1f}")
    print(f"Easel / diffusers: job {result['job_ratio']:.3f}, load {result['load_ratio']:.3f}")
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
