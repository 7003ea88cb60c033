"""SOURCE: the text cleaning of A1111 v1.10.1's two tokenizers: transformers 4.30's `CLIPTokenizer._tokenize` with
ftfy installed (`whitespace_clean(self.fix_text(text)).lower()`, `fix_text` being `ftfy.fix_text`), used for CLIP-L
(SD 1.x and SDXL's first encoder), and open_clip's `SimpleTokenizer` (`basic_clean`: `ftfy.fix_text`, then
`html.unescape` twice and `strip`; then `whitespace_clean` and `lower`), used for SDXL's OpenCLIP-G.

Test-only reference, written for Easel from those functions' logic.
"""

# ruff: noqa
# mypy: ignore-errors

import html
import re

import ftfy


def whitespace_clean(text):
    text = re.sub(r"\s+", " ", text)
    text = text.strip()
    return text


def clip_tokenizer_text(text):
    """transformers 4.30 CLIPTokenizer._tokenize, the ftfy branch."""
    return whitespace_clean(ftfy.fix_text(text)).lower()


def basic_clean(text):
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def open_clip_text(text):
    """open_clip SimpleTokenizer.encode's cleaning."""
    return whitespace_clean(basic_clean(text)).lower()
