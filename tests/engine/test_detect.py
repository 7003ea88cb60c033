"""What a checkpoint is, from its header alone, by A1111's rules (no weights read, no file names trusted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from engine.models.detect import inspect_checkpoint
from engine.models.entries import SidecarError, read_sidecar, scan_path

UNET = "model.diffusion_model.input_blocks.0.0.weight"
SD1_CLIP = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SDXL_BASE = {"conditioner.embedders.1.model.ln_final.weight": [1280], UNET: [320, 4, 3, 3]}


def header(**shapes: list[int]) -> dict[str, Any]:
    return {name: {"dtype": "F16", "shape": shape, "data_offsets": [0, 0]} for name, shape in shapes.items()}


def test_an_sdxl_base_is_told_by_open_clip_gs_final_norm() -> None:
    found = inspect_checkpoint(header(**SDXL_BASE))
    assert (found.family, found.prediction, found.ztsnr, found.refused) == ("sdxl", "epsilon", False, None)


def test_v_prediction_and_zero_terminal_snr_come_from_the_marker_keys() -> None:
    found = inspect_checkpoint(header(**SDXL_BASE, v_pred=[], ztsnr=[]))
    assert (found.prediction, found.ztsnr) == ("v_prediction", True)


@pytest.mark.parametrize(
    ("shapes", "family", "named"),
    [
        ({"conditioner.embedders.0.model.ln_final.weight": [1280]}, "sdxl-refiner", "SDXL refiner"),
        ({"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": [3072, 1024]}, "sd2", "SD 2.x"),
        ({"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": [9216]}, "sd3", "SD 3"),
    ],
)  # fmt: skip
def test_families_easel_does_not_run_are_refused_with_the_family_named(
    shapes: dict[str, list[int]], family: str, named: str
) -> None:
    found = inspect_checkpoint(header(**shapes))
    assert found.family == family
    assert found.refused is not None and found.refused.startswith(named)


def _flux(prefix: str, *, doubles: int, singles: int, dtype: str, guidance: bool) -> dict[str, Any]:
    shapes = {f"{prefix}double_blocks.{i}.img_attn.norm.key_norm.scale": [128] for i in range(doubles)}
    shapes |= {f"{prefix}double_blocks.{i}.img_attn.qkv.weight": [9216, 3072] for i in range(doubles)}
    shapes |= {f"{prefix}single_blocks.{i}.linear2.weight": [3072, 15360] for i in range(singles)}
    shapes[f"{prefix}img_in.weight"] = [3072, 64]
    if guidance:
        shapes[f"{prefix}guidance_in.in_layer.weight"] = [3072, 256]
    found = header(**shapes)
    found[f"{prefix}double_blocks.0.img_attn.qkv.weight"]["dtype"] = dtype
    return found


def test_a_flux_fill_file_runs_as_an_inpainting_model() -> None:
    fill = inspect_checkpoint(header(**{"double_blocks.0.img_attn.norm.key_norm.scale": [128],
                                        "img_in.weight": [3072, 384]}))  # fmt: skip
    assert (fill.family, fill.inpainting, fill.refused) == ("flux", True, None)
    assert fill.detail.startswith("Flux.1 Fill (1 double")


def test_a_flux_file_runs_and_is_listed_with_what_it_is_from_its_tensors() -> None:
    dev = inspect_checkpoint(_flux("model.diffusion_model.", doubles=19, singles=38, dtype="F8_E4M3", guidance=True))
    assert (dev.family, dev.refused) == ("flux", None)
    assert dev.detail == (
        "Flux.1 dev (19 double + 38 single blocks, fp8 (e4m3fn), transformer only: it runs with the installed ae, "
        "clip_l and t5xxl files)"
    )
    lite = _flux("", doubles=8, singles=38, dtype="BF16", guidance=False)
    lite |= header(**{"vae.decoder.conv_in.weight": [512, 16, 3, 3], "text_encoders.clip_l.x": [1]})
    found = inspect_checkpoint(lite)
    assert (found.refused, found.detail) == (
        None,
        "Flux.1 schnell (8 double + 38 single blocks, bf16, with its VAE and text encoders)",
    )


def test_inpainting_checkpoints_run_as_their_family_with_a_9_channel_unet() -> None:
    sd1 = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": [49408, 768]}
    for shapes, family in (({**SDXL_BASE, UNET: [320, 9, 3, 3]}, "sdxl"), ({**sd1, UNET: [320, 9, 3, 3]}, "sd1")):
        found = inspect_checkpoint(header(**shapes))
        assert (found.family, found.inpainting, found.refused) == (family, True, None)


def test_an_sd1_checkpoint_runs() -> None:
    found = inspect_checkpoint(
        header(**{"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": [49408, 768]})
    )
    assert (found.family, found.refused) == ("sd1", None)


def test_a_lora_a_vae_and_anything_else_are_told_apart() -> None:
    assert "Lora folder" in str(inspect_checkpoint(header(lora_unet_x=[4, 8])).refused)
    assert "VAE folder" in str(inspect_checkpoint(header(**{"encoder.conv_in.weight": [128, 3, 3, 3]})).refused)
    assert "recognises" in str(inspect_checkpoint(header(weights=[4])).refused)


def test_the_file_name_decides_nothing(tmp_path: Path) -> None:
    save_file({"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(2, 2)},
              str(tmp_path / "my-sdxl-model.safetensors"))  # fmt: skip
    entry = scan_path(tmp_path / "my-sdxl-model.safetensors", allow_ckpt=False)
    assert entry is not None and entry.family == "sd1"


def test_a_settings_file_overrides_the_prediction_type_of_a_file_that_lacks_the_keys(tmp_path: Path) -> None:
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2)}, str(tmp_path / "noob.safetensors"))
    (tmp_path / "noob.easel.json").write_text('{"prediction": "v_prediction", "ztsnr": true, "width": 832}')
    entry = scan_path(tmp_path / "noob.safetensors", allow_ckpt=False)
    assert entry is not None and (entry.family, entry.prediction, entry.ztsnr) == ("sdxl", "v_prediction", True)
    assert entry.settings["width"] == 832


@pytest.mark.parametrize(
    ("text", "reason"),
    [("{not json", "not readable JSON"), ('{"sizes": 1}', "unknown setting"), ('{"steps": "many"}', "must be a int"),
     ('{"prediction": "x0"}', "epsilon or v_prediction"), ("[1]", "JSON object")],
)  # fmt: skip
def test_a_malformed_settings_file_says_what_is_wrong(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "m.easel.json").write_text(text)
    with pytest.raises(SidecarError, match=reason):
        read_sidecar(tmp_path / "m.easel.json")


def test_a_model_with_a_malformed_settings_file_is_refused_saying_why(tmp_path: Path) -> None:
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2)}, str(tmp_path / "m.safetensors"))
    (tmp_path / "m.easel.json").write_text('{"steps": true}')
    entry = scan_path(tmp_path / "m.safetensors", allow_ckpt=False)
    assert entry is not None and entry.refused is not None and "settings file" in entry.refused
