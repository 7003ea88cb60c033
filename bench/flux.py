"""Flux.1 on a full-width, shallow random model (width 3072 = 24 heads x 128, Flux.1's rope and text widths, a few
blocks; built here into a temporary folder, never committed): loading from a single file (seconds and the process's
peak RAM, each format in a process of its own), then seconds per step of Easel's job against a plain diffusers
`FluxPipeline` call with the same sigmas, prompt embeddings and noise (ratio), and fp8 and GGUF Q8_0 against bf16.

    python -m bench.flux [--double 1] [--single 1] [--size 128] [--steps 2] [--repeats 2] [--out bench/flux.json]

The text encoders and VAE are narrow random stand-ins of the right widths (CLIP-L 768, T5 4096, a 16-channel VAE):
what is measured is the transformer. Engine calls and the diffusers calls are timed in turns on one thread (see
bench/timing.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from safetensors.torch import save_file

from bench.timing import in_turns, machine, on_thread, report
from engine.flux.gguf_files import write_gguf
from engine.flux.keys import BFL_PREFIX, to_bfl
from engine.flux.modules import FluxModules
from engine.flux.tiny import TINY_CLIP, TINY_T5, TINY_VAE, write_files
from engine.models.registry import ModelRegistry
from engine.params import GenerationParams
from engine.pipeline import DiffusersEngine


def build(folder: Path, double: int, single: int) -> dict[str, Path]:
    """The wide transformer as bf16, fp8 (e4m3fn) and GGUF Q8_0 files in `folder/models`, its modules beside."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        num_layers=double, num_single_layers=single, attention_head_dim=128, num_attention_heads=24,
        joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=[16, 56, 56],
    ).to(torch.bfloat16)  # fmt: skip
    t5_config = T5Config(**{**TINY_T5, "d_model": 4096, "d_kv": 64, "num_heads": 64, "num_layers": 1, "d_ff": 256})
    t5_config.dense_act_fn = "gelu_pytorch_tanh"
    parts = {
        "transformer": transformer,
        "vae": AutoencoderKL(**TINY_VAE),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**{**TINY_CLIP, "hidden_size": 768, "num_attention_heads": 12,
                                                         "num_hidden_layers": 1, "projection_dim": 768})),
        "text_encoder_2": T5EncoderModel(t5_config),
    }  # fmt: skip
    models, modules = folder / "models", folder / "modules"
    write_files(parts, modules, transformer_file="unused.safetensors")
    (modules / "unused.safetensors").unlink()
    models.mkdir(parents=True)
    bfl = to_bfl(transformer.state_dict())
    files = {"bf16": models / "flux-wide-bf16.safetensors", "fp8": models / "flux-wide-fp8.safetensors",
             "gguf": models / "flux-wide-Q8_0.gguf"}  # fmt: skip
    save_file({BFL_PREFIX + k: v.contiguous() for k, v in bfl.items()}, str(files["bf16"]))
    fp8 = {BFL_PREFIX + k: (v.to(torch.float8_e4m3fn) if v.ndim == 2 else v).contiguous() for k, v in bfl.items()}
    save_file(fp8, str(files["fp8"]))
    write_gguf(bfl, files["gguf"], "Q8_0")
    return files


def engine_for(folder: Path) -> DiffusersEngine:
    registry = ModelRegistry(folder / "models", folder / "cache")
    return DiffusersEngine(registry, "cpu", max_loaded=1, flux_modules=FluxModules([folder / "modules"]))


def load_in_process(folder: Path, name: str) -> dict[str, float]:
    """Load seconds and the peak RAM of a fresh process that loads the model (run as `--load-only`)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
    code = (
        "import json, re, sys, time; from pathlib import Path; from bench.flux import engine_for; "
        f"engine = engine_for(Path({str(folder)!r})); started = time.perf_counter(); engine.load({name!r}); "
        "seconds = time.perf_counter() - started; "
        "peak = int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)); "
        "print(json.dumps({'load s': seconds, 'peak RSS MB': peak / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def diffusers_call(engine: DiffusersEngine, params: GenerationParams) -> Any:
    """A plain diffusers FluxPipeline call on the loaded parts (the loaded model is one, with a scheduler that does
    not shift) with the job's sigmas, embeddings and noise."""
    from engine.families.flux import FluxFamily, pack
    from engine.ksampling import get_sigmas
    from engine.ksampling.denoiser import FluxDenoiser, flux_mu
    from engine.seeds import ImageRNG

    loaded = engine.load(params.model)
    family = loaded.family
    assert isinstance(family, FluxFamily)
    with torch.inference_mode():
        (cond,) = family.encode_schedule([params.prompt], 1, "", negative=False)
    side = params.width // 8
    latents = pack(ImageRNG((16, side, side), [params.seed], source="GPU").first())[0]
    sigmas = get_sigmas("Simple", params.steps, FluxDenoiser(lambda x, t: x, flux_mu(schnell=False)))
    plain = loaded.pipe

    def call() -> None:
        plain(prompt_embeds=cond.crossattn, pooled_prompt_embeds=cond.vector, latents=latents,
              sigmas=sigmas[:-1].tolist(), num_inference_steps=params.steps, guidance_scale=3.5,
              height=params.height, width=params.width, output_type="pil")  # fmt: skip

    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=1)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="bench/flux.json")
    args = parser.parse_args()
    results: dict[str, object] = {**machine(), "blocks": f"{args.double} double + {args.single} single, width 3072",
                                  "size": f"{args.size}x{args.size}", "steps": args.steps}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        files = build(folder, args.double, args.single)
        results["build s"] = time.perf_counter() - started
        for kind, path in files.items():
            results[f"{kind} file MB"] = path.stat().st_size / 2**20
            for key, value in load_in_process(folder, path.stem).items():
                results[f"{kind} {key}"] = value
        engine = engine_for(folder)
        seconds: dict[str, float] = {}
        for kind, path in files.items():
            params = GenerationParams(prompt="a lighthouse at dusk", model=path.stem, seed=1, steps=args.steps,
                                      sampler="Euler", schedule="Simple", cfg_scale=1.0, width=args.size,
                                      height=args.size)  # fmt: skip
            plain = on_thread(lambda p=params: diffusers_call(engine, p))  # type: ignore[misc]
            ours, theirs = in_turns(lambda p=params: engine.generate(p), plain, args.repeats)  # type: ignore[misc]
            seconds[kind] = ours / args.steps
            results[f"{kind} Easel s/step"] = ours / args.steps
            results[f"{kind} diffusers FluxPipeline s/step"] = theirs / args.steps
            results[f"{kind} Easel / diffusers"] = ours / theirs
        results["fp8 / bf16 s/step"] = seconds["fp8"] / seconds["bf16"]
        results["GGUF Q8_0 / bf16 s/step"] = seconds["gguf"] / seconds["bf16"]
    report(results, args.out)


if __name__ == "__main__":
    main()
