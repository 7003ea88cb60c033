"""A tiny CLIP-format BPE tokenizer: byte symbols plus just enough merges that each dataset word is one token.

vocab.json and merges.txt load with transformers' `CLIPTokenizer`; unknown words fall back to characters.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

from engine.models.tokenizer import bytes_to_unicode
from tools.shapes.data import COLOURS, SHAPES

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77
WORDS: tuple[str, ...] = ("a", "on", "background", *COLOURS, *SHAPES)


def learn_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """Plain BPE training on the word list until every word is a single symbol.

    Ties are broken by the pair itself so the merge order (and so the vocabulary) is deterministic.
    """
    split = {w: [*w[:-1], w[-1] + "</w>"] for w in words}
    merges: list[tuple[str, str]] = []
    while any(len(s) > 1 for s in split.values()):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols in split.values():
            pairs.update(itertools.pairwise(symbols))
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w, symbols in split.items():
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            split[w] = merged
    return merges


def build_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's layout: 256 byte symbols, the same with `</w>`, one token per merge, then BOS and EOS."""
    base = list(bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base]
    merges = learn_merges(WORDS)
    tokens += ["".join(m) for m in merges]
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer(folder: Path) -> Path:
    """Write vocab.json, merges.txt and a tokenizer config that pins max length 77 and pad = EOS."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder
