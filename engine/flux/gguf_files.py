"""GGUF Flux.1 transformers (city96's format: BFL tensor names, Q4_0 to Q8_0 and K-quants): the header read for the
model list (names, logical shapes, quantization; no weights), and a writer that quantizes a BFL state dict (what the
tests and the benchmark use, with the `gguf` package alone, as `llama.cpp`'s `convert` scripts do).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_TENSORS = 100_000  # a Flux transformer has ~800; more is not a model file


def read_gguf_header(path: Path) -> dict[str, Any]:
    """A safetensors-like header of a GGUF file: tensor name -> {"shape": logical shape, "dtype": quantization}. The
    `gguf` reader memory-maps the file; nothing is dequantized. Raises ValueError for what is not a GGUF file."""
    try:
        from gguf import GGUFReader
    except ImportError as err:  # pragma: no cover - it is a dependency
        raise ValueError("reading .gguf files needs the gguf package") from err
    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # the reader raises many types on a damaged file
        raise ValueError(f"not a readable GGUF file ({str(err).splitlines()[0][:120]})") from None
    if len(reader.tensors) > MAX_TENSORS:
        raise ValueError(f"not a model file: {len(reader.tensors):,} tensors")
    header: dict[str, Any] = {}
    for tensor in reader.tensors:
        shape = [int(n) for n in reversed(tensor.shape.tolist())]  # GGUF lists dimensions innermost first
        header[str(tensor.name)] = {"shape": shape, "dtype": tensor.tensor_type.name}
    return header


def write_gguf(state: Mapping[str, Any], path: Path, quant: str = "Q8_0") -> None:
    """A BFL-layout transformer state dict as a GGUF file: 2-D weights whose rows split into whole blocks
    quantized to `quant`, other tensors kept (fp16 for 2-D, fp32 for 1-D), as city96's conversions do."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    qtype = GGMLQuantizationType[quant]
    block, _ = GGML_QUANT_SIZES[qtype]
    writer = GGUFWriter(str(path), arch="flux")
    for name, tensor in state.items():
        data = tensor.float().numpy()
        if data.ndim == 2 and data.shape[1] % block == 0 and data.size > 1024:
            writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
        elif data.ndim == 2:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
