"""CLIP tokenizer files rebuilt offline from OpenAI's BPE merges (MIT), so token ids match real SD models."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

BPE_PATH = Path(__file__).resolve().parent.parent / "data" / "bpe_simple_vocab_16e6.txt.gz"
# CLIP's SimpleTokenizer keeps merges 1..48894 (49152 - 256 - 2 lines after the header).
N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table (the one CLIPTokenizer uses)."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    visible += list(range(ord("®"), ord("ÿ") + 1))
    chars = visible[:]
    extra = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(visible, [chr(c) for c in chars], strict=True))


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    with gzip.open(BPE_PATH) as fh:
        lines = fh.read().decode("utf-8").split("\n")[1 : N_MERGES + 1]
    base = list(bytes_to_unicode().values())
    tokens = base + [t + "</w>" for t in base] + ["".join(line.split()) for line in lines] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, lines


def write_clip_tokenizer(folder: Path, *, pad_token: str = EOS) -> None:
    """Write vocab.json, merges.txt and the tokenizer configs that `CLIPTokenizer.from_pretrained` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
        "errors": "replace",
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
