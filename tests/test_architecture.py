"""The house's dependency rules, checked on the source: engine/ stays free of Discord and config; torch and
diffusers are imported only under engine/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_engine_never_imports_discord_bot_commands_or_config() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & {"discord", "bot", "commands", "config"})
        for path in sources("engine")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_torch_and_diffusers_are_imported_only_under_engine() -> None:
    heavy = {"torch", "diffusers", "transformers", "peft"}
    files = [*sources("bot"), *sources("commands"), *sources("config"), *sources("cli"), ROOT / "main.py"]
    offenders = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & heavy) for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_bot_never_imports_the_commands() -> None:
    # The bot loads the command extensions by name; commands depend on the bot, never the other way round.
    offenders = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & {"commands", "cli"}) for p in sources("bot")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_plan_the_sampler_table_and_the_paste_reader_load_without_torch() -> None:
    code = (
        "import sys, engine.plan, engine.samplers, engine.paste; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import discord\nfrom config.settings import Settings\n", encoding="utf-8")
    assert {"discord", "config"} <= imported_modules(bad)


def test_the_request_resolver_and_the_waiting_room_load_without_torch() -> None:
    code = "import sys, engine.request, engine.waiting; print(sorted({'torch', 'numpy', 'discord'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_worker_never_imports_the_bots_pool() -> None:
    code = "import sys, engine.remote.worker; print('engine.remote.pool' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
