"""A1111's "NV" RNG source (`modules/rng_philox.py`): Philox-4x32-10 plus Box-Muller in numpy, reproducing the
numbers `torch.randn` gives on an NVIDIA GPU for a seed, on any device."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_TWO_POW32_INV = np.array([2.3283064e-10], dtype=np.float32)
_TWO_POW32_INV_2PI = np.array([2.3283064e-10 * 6.2831855], dtype=np.float32)

U32 = npt.NDArray[np.uint32]


def _uint32(x: npt.NDArray[np.uint64]) -> U32:
    """A uint64 array (N,) viewed as two uint32 rows (2, N): low words, then high words."""
    return x.view(np.uint32).reshape(-1, 2).transpose(1, 0)


def _round(counter: U32, key: U32) -> None:
    v1 = _uint32(counter[0].astype(np.uint64) * _PHILOX_M[0])
    v2 = _uint32(counter[2].astype(np.uint64) * _PHILOX_M[1])
    counter[0] = v2[1] ^ counter[1] ^ key[0]
    counter[1] = v2[0]
    counter[2] = v1[1] ^ counter[3] ^ key[1]
    counter[3] = v1[0]


def _philox4_32(counter: U32, key: U32, rounds: int = 10) -> U32:
    for _ in range(rounds - 1):
        _round(counter, key)
        key[0] = key[0] + _PHILOX_W[0]
        key[1] = key[1] + _PHILOX_W[1]
    _round(counter, key)
    return counter


def _box_muller(x: U32, y: U32) -> npt.NDArray[np.float32]:
    u = x * _TWO_POW32_INV + _TWO_POW32_INV / 2
    v = y * _TWO_POW32_INV_2PI + _TWO_POW32_INV_2PI / 2
    s = np.sqrt(-2.0 * np.log(u))
    return (s * np.sin(v)).astype(np.float32)


class PhiloxGenerator:
    """`Generator(seed).randn(shape)`; each call advances the offset, as consecutive CUDA draws do."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.offset = 0

    def randn(self, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        n = int(np.prod(shape))
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(n, dtype=np.uint32)  # up to 2**32 numbers per draw, as upstream
        self.offset += 1
        key = _uint32(np.array([[self.seed] * n], dtype=np.uint64))
        with np.errstate(over="ignore"):
            g = _philox4_32(counter, key)
        return _box_muller(g[0], g[1]).reshape(shape)
