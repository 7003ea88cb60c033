"""The command line: settings errors, the no-token hint, and a local image end to end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow  # each test starts Easel as a process

ROOT = Path(__file__).resolve().parent.parent


def run_main(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    clean.update(
        HF_HUB_OFFLINE="1",
        EASEL_DATA_DIR=str(tmp_path / "data"),
        EASEL_MODELS_DIR=str(tmp_path / "models"),
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
    )
    clean.update(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_bad_setting_is_one_line_naming_it_with_exit_code_2(tmp_path: Path) -> None:
    result = run_main(["imagine", "x"], tmp_path, EASEL_MAX_STEPS="lots")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "EASEL_MAX_STEPS" in result.stderr and "Traceback" not in result.stderr


def test_bad_device_is_refused_at_start_up(tmp_path: Path) -> None:
    result = run_main([], tmp_path, EASEL_DEVICE="gpu9000")
    assert result.returncode == 2 and "EASEL_DEVICE" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0,cuda:1"])
def test_a_cuda_device_on_a_machine_without_one_is_one_line_naming_the_setting(tmp_path: Path, device: str) -> None:
    result = run_main(["imagine", "x"], tmp_path, EASEL_DEVICE=device)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "EASEL_DEVICE: cuda" in result.stderr and "use cpu or auto" in result.stderr


def test_no_token_says_what_to_set(tmp_path: Path) -> None:
    result = run_main([], tmp_path)
    assert result.returncode == 2
    assert "EASEL_DISCORD_TOKEN" in result.stderr and result.stderr.strip().count("\n") == 0


def test_imagine_writes_a_png_with_parameters_and_prints_them(tmp_path: Path) -> None:
    result = run_main(
        ["imagine", "a lighthouse at dusk", "--seed", "42", "--model", "builtin:tiny", "--steps", "3",
         "--out", "out.png"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Seed: 42" in result.stdout and "Steps: 3" in result.stdout
    image = Image.open(io.BytesIO((tmp_path / "out.png").read_bytes()))
    assert image.info["parameters"] == result.stdout.strip()
    assert "3/3" in result.stderr  # the progress bar reached the end
    # Quiet: nothing about packages Easel does not use, no default-model hint when a model was named.
    assert "torchvision" not in result.stderr and "No model in" not in result.stderr
    assert " on cpu" in result.stderr and "gpu0" not in result.stderr


def test_imagine_refuses_bad_input_without_traceback(tmp_path: Path) -> None:
    result = run_main(["imagine", "x", "--model", "builtin:tiny", "--width", "100"], tmp_path)
    assert result.returncode == 2
    assert "multiple of 8" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_when_saving_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = run_main(["imagine", "x", "--model", "builtin:tiny", "--steps", "2", "--out", "/dev/full"], tmp_path)
    assert result.returncode == 1
    assert "could not save /dev/full: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pasted_block_brings_its_model_or_says_it_is_missing(tmp_path: Path) -> None:
    block = "a lighthouse\nSteps: 2, Sampler: Euler, Seed: 5, Size: 64x64, Model: tiny-but-elsewhere"
    result = run_main(["imagine", "x", "--parameters", block, "--out", "out.png"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "The pasted model `tiny-but-elsewhere` is not available here; used `builtin:shapes`." in result.stderr
    assert "Model: builtin:shapes" in result.stdout or 'Model: "builtin:shapes"' in result.stdout
    assert "Seed: 5" in result.stdout and result.stdout.startswith("x\n")
    found = run_main(["imagine", "x", "--parameters", block.replace("tiny-but-elsewhere", "builtin:tiny")], tmp_path)
    assert found.returncode == 0 and "not available" not in found.stderr and "builtin:tiny" in found.stdout


def test_an_unknown_lora_or_a_missing_out_folder_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    lora = run_main(["imagine", "a red circle <lora:gren:1>", "--steps", "2"], tmp_path)
    assert lora.returncode == 2 and "error: Unknown LoRA 'gren'. Closest: green." in lora.stderr
    out = run_main(["imagine", "a red circle", "--steps", "2", "--out", "nowhere/x.png"], tmp_path)
    assert out.returncode == 2 and "error: --out: the folder 'nowhere' does not exist." in out.stderr
    for result in (lora, out):
        assert "queued" not in result.stderr and "loaded model" not in result.stderr
        assert "Traceback" not in result.stderr


def test_flags_at_the_end_of_a_cli_prompt_work_as_on_discord(tmp_path: Path) -> None:
    result = run_main(["imagine", "a red circle on a blue background --ar 2:1 --no blur", "--steps", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("a red circle on a blue background\nNegative prompt: blur\n")
    assert "Size: 128x64" in result.stdout


def test_a_block_alone_or_as_the_prompt_is_drawn_as_it_is(tmp_path: Path) -> None:
    block = "a blue square on a yellow background\nSteps: 2, Sampler: Euler, Seed: 5, Size: 64x64"
    alone = run_main(["imagine", "--parameters", block, "--out", "a.png"], tmp_path)
    typed = run_main(["imagine", block, "--out", "b.png"], tmp_path)
    for result in (alone, typed):
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("a blue square on a yellow background\nSteps: 2, Sampler: Euler")
        assert "Seed: 5" in result.stdout
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_a_worker_without_a_redis_url_says_what_to_set(tmp_path: Path) -> None:
    result = run_main(["worker"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "EASEL_REDIS_URL" in result.stderr and "Add a GPU machine" in result.stderr


def test_a_bad_redis_url_is_one_line_that_does_not_show_the_password(tmp_path: Path) -> None:
    result = run_main(["worker"], tmp_path, EASEL_REDIS_URL="http://easel-worker:hunter2@bot-host:6379")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "EASEL_REDIS_URL" in result.stderr and "hunter2" not in result.stderr


def test_the_readme_quick_start_prints_what_the_readme_shows(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = readme.split("```bash\n", 1)[1].split("\n", 1)[0]
    assert command == './easel.sh imagine "a red circle on a blue background" --seed 42 --out out.png'
    shown = readme.split("prints the parameter text:\n\n```\n", 1)[1].split("```", 1)[0]
    result = run_main(["imagine", "a red circle on a blue background", "--seed", "42", "--out", "out.png"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")
