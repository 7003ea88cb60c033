"""Easel's command line: the arguments of `main.py`, and the local commands (`imagine`, `models`) that run without
Discord. The composition root (`main.py`) builds what they use and passes it in."""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="Easel: Stable Diffusion for your Discord server.")
    parser.add_argument(
        "--sync-commands",
        action="store_true",
        help="send the slash commands to Discord at start-up (Easel does so by itself when they changed)",
    )
    sub = parser.add_subparsers(dest="command")
    img = sub.add_parser("imagine", help="make an image locally, without Discord")
    img.add_argument(
        "prompt",
        nargs="?",
        default="",
        help="what to draw, in A1111 syntax, with Discord's flags at the end (--ar 16:9 --no text ...); a whole "
        "pasted parameter block also works here; leave it out (or give -) to use --parameters' prompt",
    )
    img.add_argument("--negative", "--negative-prompt", dest="negative_prompt", default=None)
    img.add_argument("--steps", default=None)
    img.add_argument("--sampler", default=None, help='A1111 name, e.g. "DPM++ 2M", "Euler a", "DPM++ 2M Karras"')
    img.add_argument("--schedule", default=None, help="schedule type: Automatic, Karras, Exponential, ...")
    img.add_argument("--cfg", "--cfg-scale", dest="cfg_scale", default=None)
    img.add_argument("--distilled-cfg", "--guidance", dest="distilled_cfg_scale", default=None,
                     help="a Flux.1 dev model's distilled CFG scale (Forge's; default 3.5)")  # fmt: skip
    img.add_argument("--seed", default=None, help="-1 or empty for random")
    img.add_argument("--width", default=None)
    img.add_argument("--height", default=None)
    img.add_argument("--batch", dest="batch_size", default=None)
    img.add_argument("--subseed", default=None, help="variation seed")
    img.add_argument("--subseed-strength", dest="subseed_strength", default=None, help="variation strength 0..1")
    img.add_argument("--clip-skip", dest="clip_skip", default=None)
    img.add_argument("--model", default=None, help="model name (see `python main.py models`)")
    img.add_argument("--vae", default=None, help="Automatic (the model's), None (the checkpoint's own) or a VAE file")
    img.add_argument("--lora", default=None, help="a LoRA to add, as <lora:name:weight> (more as tags in the prompt)")
    img.add_argument("--lora-weight", dest="lora_weight", type=float, default=None, help="the LoRA's weight (1)")
    img.add_argument("--rng", default=None, help="RNG source: GPU (default; NVIDIA's numbers anywhere), CPU or NV")
    img.add_argument("--ensd", default=None, help="eta noise seed delta (A1111 ENSD)")
    img.add_argument("--init-image", dest="init_image", default=None, help="img2img: a PNG/JPEG/WebP file")
    img.add_argument("--denoise", dest="denoising_strength", default=None, help="img2img / hires denoising 0..1")
    img.add_argument(
        "--mask",
        default=None,
        help="inpainting: with --init-image, a mask image (white = redraw); an init image with transparency "
        "redraws its transparent area without one",
    )
    img.add_argument("--mask-blur", dest="mask_blur", default=None, help="A1111's Mask blur (default 4)")
    img.add_argument(
        "--invert-mask",
        dest="inpainting_mask_invert",
        action="store_true",
        default=None,
        help="redraw what is not masked",
    )
    img.add_argument(
        "--masked-content",
        dest="inpainting_fill",
        default=None,
        help="fill | original (default) | latent-noise | latent-nothing",
    )
    img.add_argument(
        "--inpaint-area", dest="inpaint_full_res", default=None, help="whole (default) | masked (only masked)"
    )
    img.add_argument(
        "--padding", dest="inpaint_full_res_padding", default=None, help="only masked: padding in pixels (32)"
    )
    img.add_argument(
        "--tile", dest="tiling", action="store_true", default=None, help="a seamless, tiling image (A1111's Tiling)"
    )
    img.add_argument(
        "--detailer",
        dest="detailers",
        default=None,
        help="fix faces or hands after drawing (ADetailer): a detector from `python main.py models`, e.g. face_yolov8n",
    )
    img.add_argument("--zoom-out", dest="zoom_out", type=float, default=None, help="with --init-image: zoom out 1..2")
    img.add_argument("--pan", default=None, help="with --init-image: extend the picture left, right, up or down")
    img.add_argument("--make-square", dest="make_square", action="store_true", help="with --init-image: extend to 1:1")
    img.add_argument(
        "--noise-multiplier", dest="initial_noise_multiplier", default=None, help="img2img: A1111's Noise multiplier"
    )
    img.add_argument(
        "--hires",
        dest="enable_hr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hires fix (A1111); --no-hires turns off the one a pasted block switches on",
    )
    img.add_argument("--hr-scale", dest="hr_scale", default=None)
    img.add_argument("--hr-steps", dest="hr_steps", default=None)
    img.add_argument("--hr-upscaler", dest="hr_upscaler", default=None, help='"Latent" (default), "Lanczos", ...')
    img.add_argument(
        "--hr-sampler", dest="hr_sampler", default=None, help="the hires pass's sampler (default: the same)"
    )
    img.add_argument("--hr-schedule", dest="hr_schedule", default=None, help="its schedule type (default: the same)")
    img.add_argument(
        "--parameters",
        default=None,
        help="an A1111/civitai parameter block, its model included (the prompt and flags win)",
    )
    img.add_argument("--out", default="out.png", help="output PNG path (batches add -1, -2, ...)")
    up = sub.add_parser("upscale", help="upscale an image without redrawing it (A1111's Extras tab)")
    up.add_argument("image", help="a PNG, JPEG or WebP file")
    up.add_argument(
        "--upscaler",
        default=None,
        help="an upscaler model (see `python main.py models`), or Lanczos / Nearest (default: Lanczos)",
    )
    up.add_argument("--scale", default=None, help="upscale by this much, 1 to 8 (Extras' Scale by; default 4)")
    up.add_argument("--width", default=None, help="Scale to: at least this wide (with --height)")
    up.add_argument("--height", default=None, help="Scale to: at least this tall (with --width)")
    up.add_argument("--out", default="upscaled.png", help="output PNG path")
    tags = sub.add_parser("describe", help="an image's tags as a prompt, and its rating (a WD14 tagger)")
    tags.add_argument("image", help="a PNG, JPEG or WebP file")
    tags.add_argument("--tagger", default=None, help="a tagger from `python main.py models` (default: the first)")
    tags.add_argument("--threshold", default=None, help="general tags above this probability (default: the tagger's)")
    sub.add_parser("models", help="list the models Easel can use, and refused files")
    conv = sub.add_parser(
        "convert-detector", help="turn an ultralytics detector .pt you trust into .safetensors (nothing else runs)"
    )
    conv.add_argument("file", help="an ultralytics YOLOv8 .pt (face_yolov8n.pt, hand_yolov8n.pt, ...)")
    conv.add_argument("--out", default=None, help="where to write it (default: next to it, as .safetensors)")
    sub.add_parser("worker", help="run jobs for an Easel bot on another machine, through Redis (EASEL_REDIS_URL)")
    return parser
