"""The load run of issue 11: 500 jobs from 100 users on `builtin:tiny`, through the Discord stand-in, discord.py and
the bot, onto the real executor. Prints what users would notice and writes it to bench/load.json.

    python -m bench.load [--users 100] [--jobs 5] [--out bench/load.json]

The run lives with the stand-in in tests/bot/load.py (the suite runs a smaller one); it is loaded by name here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=5, help="jobs per user")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("load.json"))
    args = parser.parse_args()
    load = importlib.import_module("tests.bot.load")
    report = load.main(args.users, args.jobs).as_dict()
    report["machine"] = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    for key, value in report.items():
        print(f"{key:>16}: {value}")
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
