"""The upscaler folders (A1111's `models/ESRGAN`, `models/RealESRGAN`...): each file's architecture and scale read
from its tensor names and shapes, A1111's built-in names mapped to their standard files, and why a file is refused.

No torch here. A `.pth` is a pickle: its structure is read by an unpickler that knows only tensors and plain
containers (anything else it is asked to build is refused, and nothing it reads can run code); the weights are read
later by `torch.load(weights_only=True)` after the same check (`engine.upscalers.arch`).
"""

from __future__ import annotations

import difflib
import io
import math
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import InvalidParamsError
from engine.models.single_file import read_header

# A state dict's pickle is a few hundred kilobytes (names and shapes; the weights are stored beside it).
MAX_PICKLE_BYTES = 64 * 1024 * 1024
SUFFIXES = (".safetensors", ".pth")
REFUSED_SUFFIXES = {
    ".pt": "a .pt file may be a TorchScript program, which runs code when loaded; convert it to .safetensors "
    "(or save its state dict as .pth)",
    ".ckpt": "a .ckpt upscaler is a pickle Easel does not read; convert it to .safetensors",
}
# The names A1111 shows for its built-in upscaler models, and the files behind them (modules/realesrgan_model.py,
# esrgan_model.py, dat_model.py, the SwinIR extension): a pasted `Hires upscaler: R-ESRGAN 4x+` finds the owner's
# `RealESRGAN_x4plus.pth`.
A1111_NAMES = {
    "R-ESRGAN 4x+": "RealESRGAN_x4plus",
    "R-ESRGAN 4x+ Anime6B": "RealESRGAN_x4plus_anime_6B",
    "R-ESRGAN 2x+": "RealESRGAN_x2plus",
    "R-ESRGAN General 4xV3": "realesr-general-x4v3",
    "R-ESRGAN General WDN 4xV3": "realesr-general-wdn-x4v3",
    "R-ESRGAN AnimeVideo": "realesr-animevideov3",
    "ESRGAN_4x": "ESRGAN_4x",
    "DAT x2": "DAT_x2",
    "DAT x3": "DAT_x3",
    "DAT x4": "DAT_x4",
    "SwinIR 4x": "SwinIR_4x",
    "ScuNET GAN": "scunet_color_real_gan",
    "ScuNET PSNR": "scunet_color_real_psnr",
}
_STORAGES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}
# What a state-dict file may wrap its weights in (BasicSR's `params_ema` first, as A1111's loader takes it).
_WRAPPERS = ("params_ema", "params-ema", "params", "model", "net", "state_dict", "model_state_dict")
_FLAT_WRAPPERS = ("params_ema", "params-ema", "params", "state_dict")


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as a file describes it: shape and dtype, no data."""

    shape: tuple[int, ...]
    dtype: str


Shapes = Mapping[str, tuple[int, ...]]


class _Rebuilt:
    """What the structure reader builds for a tensor or a parameter."""

    def __init__(self, shape: tuple[int, ...], dtype: str) -> None:
        self.info = TensorInfo(shape, dtype)


def _rebuild_tensor(storage: object, offset: object, size: object, *rest: object) -> _Rebuilt:
    if not isinstance(size, tuple) or not all(isinstance(n, int) and n >= 0 for n in size):
        raise pickle.UnpicklingError("a tensor with a malformed size")
    return _Rebuilt(size, storage if isinstance(storage, str) else "?")


def _rebuild_parameter(data: object, *rest: object) -> object:
    return data


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("typing", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StructureUnpickler(pickle.Unpickler):
    """Builds dicts, lists, numbers, strings and tensor descriptions; refuses every other global, by name."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        raise pickle.UnpicklingError(f"Global '{module}.{name}' is forbidden")

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage type, key, location, numel): the storage type names the dtype; the data is not read.
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "storage":
            return pid[1] if isinstance(pid[1], str) else "?"
        raise pickle.UnpicklingError("an unknown persistent object")


class _Capped(io.RawIOBase):
    """A file read through a byte budget: a pickle cannot make the reader read a whole multi-gigabyte file."""

    def __init__(self, fh: BinaryIO, budget: int) -> None:
        self._fh, self._left = fh, budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if self._left <= 0:
            raise pickle.UnpicklingError(f"its pickle is larger than {MAX_PICKLE_BYTES // 2**20} MiB")
        data = self._fh.read(min(len(view), self._left))
        self._left -= len(data)
        view[: len(data)] = data
        return len(data)


def read_pickle_structure(path: Path) -> object:
    """A `.pth` file's object with every tensor replaced by its `TensorInfo`: the torch zip format or the legacy one.
    ValueError (with the unpickler's reason, e.g. "Global 'posix.system' is forbidden") for anything else."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if len(names) != 1:
                    raise ValueError("not a torch state dict (no data.pkl)")
                info = archive.getinfo(names[0])
                if info.file_size > MAX_PICKLE_BYTES:
                    raise ValueError(f"its pickle is larger than {MAX_PICKLE_BYTES // 2**20} MiB")
                raw = archive.read(info)
            result = _StructureUnpickler(io.BytesIO(raw)).load()
        else:
            with path.open("rb") as fh:
                stream = io.BufferedReader(_Capped(fh, MAX_PICKLE_BYTES))
                unpickler = _StructureUnpickler(stream)
                magic = unpickler.load()
                if magic != 0x1950A86A20F9469CFC6C:
                    raise ValueError("not a torch file")
                unpickler.load()  # protocol version
                unpickler.load()  # system info
                result = unpickler.load()
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, IndexError, TypeError, AttributeError) as err:
        raise ValueError(f"refused to unpickle: {err}") from None
    except RecursionError:
        raise ValueError("refused to unpickle: nested too deeply") from None
    return result


def _tensors(found: object, prefix: str = "") -> dict[str, TensorInfo]:
    """The tensors of a (nested) state dict, by dotted name."""
    out: dict[str, TensorInfo] = {}
    if isinstance(found, _Rebuilt):
        out[prefix] = found.info
    elif isinstance(found, dict):
        for key, value in found.items():
            if isinstance(key, str):
                out.update(_tensors(value, f"{prefix}.{key}" if prefix else key))
    return out


def unwrap(found: object) -> object:
    """The state dict inside a saved object: BasicSR's `params_ema` (preferred, as A1111's loader takes it),
    `params`, `state_dict`..."""
    while isinstance(found, dict):
        inner = next((found[k] for k in _WRAPPERS if isinstance(found.get(k), dict)), None)
        if inner is None:
            return found
        found = inner
    return found


def state_dict_prefix(keys: set[str]) -> str:
    """A flat file's wrapper prefix (`params_ema.`) and a `module.` prefix (DataParallel), to drop."""
    prefix = next((w + "." for w in _FLAT_WRAPPERS if keys and all(k.startswith(w + ".") for k in keys)), "")
    inner = {k.removeprefix(prefix) for k in keys}
    return prefix + ("module." if inner and all(k.startswith("module.") for k in inner) else "")


def file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of an upscaler file, wrappers dropped, reading no weights; ValueError why not."""
    if path.suffix.lower() == ".safetensors":
        header = read_header(path)
        shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    else:
        shapes = {k: v.shape for k, v in _tensors(unwrap(read_pickle_structure(path))).items()}
    prefix = state_dict_prefix(set(shapes))
    return {k.removeprefix(prefix): v for k, v in shapes.items()}


@dataclass(frozen=True)
class Architecture:
    """What an upscaler file holds, read from its shapes: enough to build the network and to list it."""

    name: str  # "ESRGAN", "Real-ESRGAN Compact", or what spandrel detected
    scale: int
    config: tuple[tuple[str, int], ...] = ()  # the network's sizes (blocks, filters...), for the builder

    def get(self, key: str) -> int:
        return dict(self.config)[key]


_OLD_RDB = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.weight$")
_NEW_RDB = re.compile(r"^(?:body|RRDB_trunk)\.(\d+)\.(?:rdb|RDB)(\d)\.conv(\d)\.weight$")


def esrgan_layout(shapes: Shapes) -> dict[str, str] | None:
    """Easel's RRDBNet key for each of the file's weight keys (old `model.N` layout, Real-ESRGAN's `conv_first` /
    `body.N.rdbK`, BSRGAN's `RRDB_trunk`), or None when the file is no RRDBNet. Biases follow their weights."""
    keys = set(shapes)
    mapping: dict[str, str] = {}
    if "model.0.weight" in keys and "model.1.sub.0.RDB1.conv1.0.weight" in keys:
        blocks = {int(m.group(1)) for k in keys if (m := _OLD_RDB.match(k))}
        top = max(int(k.split(".")[1]) for k in keys if re.match(r"^model\.\d+\.weight$", k))
        mapping["model.0"] = "conv_first"
        mapping[f"model.1.sub.{len(blocks)}"] = "conv_body"
        ups = list(range(3, top - 3, 3))
        mapping.update({f"model.{index}": f"ups.{i}" for i, index in enumerate(ups)})
        mapping[f"model.{top - 2}"] = "conv_hr"
        mapping[f"model.{top}"] = "conv_last"
        for key in keys:
            if m := _OLD_RDB.match(key):
                mapping[key.removesuffix(".weight")] = f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}"
    elif "conv_first.weight" in keys and (
        "body.0.rdb1.conv1.weight" in keys or "RRDB_trunk.0.RDB1.conv1.weight" in keys
    ):
        mapping["conv_first"] = "conv_first"
        mapping["conv_body" if "conv_body.weight" in keys else "trunk_conv"] = "conv_body"
        ups = sorted(int(m.group(2)) for k in keys if (m := re.match(r"^(conv_up|upconv)(\d)\.weight$", k)))
        up_name = "conv_up" if "conv_up1.weight" in keys else "upconv"
        mapping.update({f"{up_name}{n}": f"ups.{i}" for i, n in enumerate(ups)})
        mapping["conv_hr" if "conv_hr.weight" in keys else "HRconv"] = "conv_hr"
        mapping["conv_last"] = "conv_last"
        for key in keys:
            if m := _NEW_RDB.match(key):
                mapping[key.removesuffix(".weight")] = f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}"
    else:
        return None
    return mapping


def detect(shapes: Shapes) -> Architecture:
    """The architecture and scale of an upscaler's weights; ValueError saying why they are not one Easel runs."""
    if any(".conv1x1." in k for k in shapes):
        raise ValueError("an ESRGAN+ model: Easel runs ESRGAN and Real-ESRGAN models (and others with spandrel)")
    layout = esrgan_layout(shapes)
    if layout is not None:
        return _esrgan(shapes, layout)
    if "body.0.weight" in shapes and len(shapes["body.0.weight"]) == 4:
        return _compact(shapes)
    raise ValueError(_unknown(shapes))


def _weight(shapes: Shapes, key: str) -> tuple[int, ...]:
    shape = shapes.get(key + ".weight")
    if shape is None or len(shape) != 4:
        raise ValueError(f"damaged: {key}.weight is missing or not a convolution")
    return shape


def _esrgan(shapes: Shapes, layout: dict[str, str]) -> Architecture:
    named = {new: _weight(shapes, old) for old, new in layout.items()}
    blocks = {int(key.split(".")[1]) for key in named if key.startswith("body.")}
    if blocks != set(range(len(blocks))) or not blocks:
        raise ValueError("damaged: its residual blocks are not numbered 0..N")
    filters, in_channels = named["conv_first"][0], named["conv_first"][1]
    out_channels = named["conv_last"][0]
    ups = sum(1 for key in named if key.startswith("ups."))
    shuffle = {out_channels: 1, out_channels * 4: 2, out_channels * 16: 4}.get(in_channels)
    if out_channels != 3 or shuffle is None:
        raise ValueError(f"an ESRGAN model for {out_channels}-channel images: Easel upscales RGB pictures")
    scale = 2**ups // shuffle
    if scale < 1:
        raise ValueError("an ESRGAN model that shrinks pictures")
    config = (
        ("blocks", len(blocks)),
        ("filters", filters),
        ("growth", named["body.0.rdb1.conv1"][0]),
        ("ups", ups),
        ("shuffle", shuffle),
    )
    return Architecture("ESRGAN", scale, config)


def _compact(shapes: Shapes) -> Architecture:
    convs = sorted(
        int(m.group(1)) for k, v in shapes.items() if (m := re.match(r"^body\.(\d+)\.weight$", k)) and len(v) == 4
    )
    last = convs[-1]
    if convs != list(range(0, last + 1, 2)):
        raise ValueError("not an upscaler Easel knows (body layers not in Real-ESRGAN Compact's order)")
    first, final = shapes["body.0.weight"], shapes[f"body.{last}.weight"]
    in_channels, features = first[1], first[0]
    scale = math.isqrt(final[0] // in_channels) if in_channels else 0
    if in_channels != 3 or scale < 1 or scale * scale * in_channels != final[0]:
        raise ValueError("a Real-ESRGAN Compact model that does not take and give RGB pictures")
    prelu = "body.1.weight" in shapes and len(shapes["body.1.weight"]) == 1
    config = (("convs", len(convs) - 2), ("features", features), ("prelu", int(prelu)))
    return Architecture("Real-ESRGAN Compact", scale, config)


# Signature keys of architectures Easel leaves to spandrel, to name them in a refusal.
_OTHER = (
    ("layers.0.residual_group.blocks.0.attn.relative_position_bias_table", "a SwinIR model"),
    ("layers.0.blocks.0.attn.relative_position_bias_table", "a HAT or Swin2SR model"),
    ("before_RG.0.weight", "a DAT model"),
    ("layers.0.residual_group.blocks.0.attn.attn_mask", "a SwinIR model"),
    ("conv_after_body.weight", "a transformer upscaler (DAT, HAT, SwinIR...)"),
    ("feats.0.weight", "a RealPLKSR or SPAN model"),
    ("m_head.0.weight", "a SCUNet model"),
)
NOT_INSTALLED = "spandrel, which is not installed here"


def _unknown(shapes: Shapes) -> str:
    for key, what in _OTHER:
        if key in shapes:
            return f"{what}: Easel runs it through {NOT_INSTALLED}"
    return f"not an upscaler Easel knows: no ESRGAN or Real-ESRGAN Compact weights (other kinds need {NOT_INSTALLED})"


@dataclass(frozen=True)
class UpscalerFile:
    name: str  # the file's stem: what a request names and what `Hires upscaler:` writes
    path: Path
    architecture: Architecture | None
    refused: str | None = None

    @property
    def label(self) -> str:
        """`ESRGAN ×4`, as lists show it."""
        return f"{self.architecture.name} ×{self.architecture.scale}" if self.architecture else "refused"


Detector = Callable[[Path], Architecture]


def detect_file(path: Path) -> Architecture:
    return detect(file_shapes(path))


class UpscalerLibrary:
    """The upscaler folders, scanned by file stem; `extra` detects what Easel's own architectures do not cover
    (spandrel's, where it is importable)."""

    def __init__(self, folders: list[Path], extra: Detector | None = None) -> None:
        self.folders = folders
        self._extra = extra
        self._files: dict[str, UpscalerFile] = {}
        self.refresh()

    def refresh(self) -> None:
        files: dict[str, UpscalerFile] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                suffix = path.suffix.lower()
                if path.stem.lower() in files or (suffix not in SUFFIXES and suffix not in REFUSED_SUFFIXES):
                    continue
                files[path.stem.lower()] = self._read(path)
        self._files = files

    def _read(self, path: Path) -> UpscalerFile:
        suffix = path.suffix.lower()
        if suffix in REFUSED_SUFFIXES:
            return UpscalerFile(path.stem, path, None, REFUSED_SUFFIXES[suffix])
        try:
            shapes = file_shapes(path)
        except (OSError, ValueError) as err:  # unreadable, damaged, or a pickle asking for more than tensors
            return UpscalerFile(path.stem, path, None, str(err))
        try:
            return UpscalerFile(path.stem, path, detect(shapes))
        except ValueError as err:
            reason = str(err)
        if self._extra is not None:  # spandrel, where it imports: the architectures Easel does not build itself
            try:
                return UpscalerFile(path.stem, path, self._extra(path))
            except Exception as extra_err:  # spandrel raises anything; the file is listed as refused
                reason = f"not an upscaler spandrel knows either ({str(extra_err)[:160]})"
        return UpscalerFile(path.stem, path, None, reason)

    def entries(self) -> list[UpscalerFile]:
        return sorted(self._files.values(), key=lambda f: f.name.lower())

    def names(self) -> list[str]:
        return [f.name for f in self.entries() if f.refused is None]

    def find(self, name: str) -> UpscalerFile | None:
        """The file for a name: its stem (case forgiven), or an A1111 built-in name of a standard file."""
        wanted = name.strip().lower()
        for key in (wanted, A1111_NAMES.get(name.strip(), "").lower()):
            if key and key in self._files:
                return self._files[key]
        return None

    def resolve(self, name: str) -> UpscalerFile:
        """The usable upscaler file for a name; InvalidParamsError naming the closest ones otherwise."""
        found = self.find(name)
        if found is not None and found.refused is not None:
            raise InvalidParamsError(f"Upscaler {found.name!r} is refused: {found.refused}.")
        if found is not None:
            return found
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.4)
        hint = (
            f" Closest: {', '.join(close)}."
            if close
            else " No upscaler models are installed."
            if not self._files
            else ""
        )
        raise InvalidParamsError(f"Unknown upscaler {name[:60]!r}.{hint}")


def install_hint(name: str) -> str:
    """What file a pasted upscaler name needs: `4x-UltraSharp.pth` (or its built-in's standard file)."""
    return f"{A1111_NAMES.get(name.strip(), name.strip())}.pth"
