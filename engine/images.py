"""Image files in and out: A1111's metadata (PNG `parameters` text, JPEG/WebP EXIF UserComment) and upload checks.

Writing follows A1111 v1.10.1 `modules/images.py: save_image_with_geninfo`; reading follows `read_info_from_image`.
Reading and checking walk the file's own chunks and markers, so an upload's pixels are never decoded here.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator, Mapping

import piexif
import piexif.helper
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.errors import InvalidParamsError
from engine.samplers import samplers_map_name

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_USER_COMMENT = piexif.ExifIFD.UserComment
_MAX_TEXT = 1 << 20  # the compressed text chunks of one file may not inflate beyond 1 MiB in all
# Chunks (PNG, WebP) or header segments (JPEG) read from one file: a real image has tens, or a few thousand image
# data chunks; 873,000 one-byte text chunks in 20 MiB once cost seconds of CPU per read.
MAX_CHUNKS = 20_000
# The only PNG text keywords read_infotext looks at: A1111's, and NovelAI's (`Software`, `Description`, `Comment`).
_TEXT_KEYS = ("parameters", "comment", "Software", "Description", "Comment")
_KEYWORD_MAX = 79  # the PNG specification's longest keyword
_EXIF_POINTER = 0x8769  # IFD0's pointer to the Exif IFD
# JPEG start-of-frame markers that carry the image size (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def encode_png(image: Image.Image, infotext: str, extras: str = "") -> bytes:
    """PNG with the infotext in a `parameters` chunk (tEXt when it is Latin-1, iTXt (UTF-8) otherwise) and, after
    an upscale, A1111's postprocessing fields in an `extras` chunk."""
    info = PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    if extras:
        info.add_text("extras", extras)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def encode_jpeg(image: Image.Image, infotext: str, quality: int = 80) -> bytes:
    """JPEG with the infotext as EXIF UserComment (`UNICODE\\0` + UTF-16BE, big-endian EXIF), as A1111."""
    return _with_exif(_save_rgb(image, "JPEG", quality), infotext)


def encode_webp(image: Image.Image, infotext: str, quality: int = 80) -> bytes:
    """Lossy WebP with the same EXIF UserComment as encode_jpeg."""
    return _with_exif(_save_rgb(image, "WEBP", quality), infotext)


def _save_rgb(image: Image.Image, image_format: str, quality: int) -> bytes:
    if image.mode == "RGBA":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format=image_format, quality=quality)
    return out.getvalue()


def _with_exif(data: bytes, infotext: str) -> bytes:
    exif = piexif.dump({"Exif": {_USER_COMMENT: piexif.helper.UserComment.dump(infotext, encoding="unicode")}})
    out = io.BytesIO()
    piexif.insert(exif, data, out)
    return out.getvalue()


def read_infotext(data: bytes) -> str | None:
    """The parameter text in a PNG, JPEG or WebP file, read as A1111's read_info_from_image does, or None.

    A non-empty EXIF UserComment wins over the PNG `parameters` text; without EXIF, a `comment` (a JPEG COM
    marker or a PNG text chunk so named) does.
    """
    texts: dict[str, str] = {}
    exif: bytes | None = None
    if data.startswith(PNG_SIGNATURE):
        texts, exif = _png_metadata(data)
    elif data.startswith(b"\xff\xd8"):
        texts, exif = _jpeg_metadata(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        exif = _webp_exif(data)
    else:
        return None
    info = texts.get("parameters")
    if exif is not None:
        comment = _user_comment(exif)
        if comment:
            info = comment
    elif "comment" in texts:
        info = texts["comment"]
    if texts.get("Software") == "NovelAI":
        info = _novelai_infotext(texts, _png_size(data)) or info
    return info


def _novelai_infotext(texts: Mapping[str, str], size: tuple[int, int] | None) -> str | None:
    """A NovelAI PNG as A1111's read_info_from_image turns it into parameter text: `Description` is the prompt, the
    `Comment` JSON gives the rest (its sampler through `samplers_map`, else Euler a), then `Clip skip: 2, ENSD:
    31337`. None when the JSON lacks a field (A1111 reports the error and keeps what it had)."""
    try:
        data = json.loads(texts["Comment"])
        sampler = samplers_map_name(str(data["sampler"])) or "Euler a"
        width, height = size or (0, 0)
        return (
            f"{texts['Description']}\nNegative prompt: {data['uc']}\nSteps: {data['steps']}, Sampler: {sampler}, "
            f"CFG scale: {data['scale']}, Seed: {data['seed']}, Size: {width}x{height}, Clip skip: 2, ENSD: 31337"
        )
    except (KeyError, TypeError, ValueError, RecursionError):
        return None


def _user_comment(exif: bytes) -> str:
    raw = _exif_user_comment(exif)
    if raw is None:
        return ""
    try:
        return str(piexif.helper.UserComment.load(raw))
    except ValueError:
        # A1111 falls back to UTF-8 on the whole value; we also drop the 8-byte "undefined" prefix of NULs,
        # which A1111 would leave at the start of the prompt.
        return raw.decode("utf-8", errors="ignore").lstrip("\x00")


def _exif_user_comment(exif: bytes) -> bytes | None:
    """The raw UserComment of an EXIF block (`Exif\0\0` + TIFF, or bare TIFF), as piexif.load would find it.

    Only the two entries that lead to it are read (IFD0's Exif pointer, then the Exif IFD's UserComment), so no
    count or offset in the file can make this allocate more than the comment's own bytes, which lie in the file.
    """
    tiff = memoryview(exif)[6:] if exif.startswith(b"Exif\x00\x00") else memoryview(exif)
    order = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    if order is None or len(tiff) < 8:
        return None
    (ifd0,) = struct.unpack(order + "I", tiff[4:8])
    pointer = _ifd_entry(tiff, order, ifd0, _EXIF_POINTER)
    if pointer is None:
        return None
    entry = _ifd_entry(tiff, order, struct.unpack(order + "I", pointer[8:12])[0], _USER_COMMENT)
    if entry is None:
        return None
    (count,) = struct.unpack(order + "I", entry[4:8])
    if count <= 4:
        return bytes(entry[8 : 8 + count])
    (offset,) = struct.unpack(order + "I", entry[8:12])
    return bytes(tiff[offset : offset + count])


def _ifd_entry(tiff: memoryview, order: str, offset: int, tag: int) -> memoryview | None:
    """The 12-byte entry for `tag` in the IFD at `offset`, or None (at most 65535 entries, each read in place)."""
    if offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    for pos in range(offset + 2, min(offset + 2 + 12 * count, len(tiff) - 11), 12):
        if struct.unpack(order + "H", tiff[pos : pos + 2])[0] == tag:
            return tiff[pos : pos + 12]
    return None


def _bounded() -> Iterator[int]:
    """Counts the chunks of one file read so far; past `MAX_CHUNKS` the file is refused, not read on."""
    yield from range(MAX_CHUNKS)
    raise InvalidParamsError(f"That image has more than {MAX_CHUNKS:,} chunks; Easel does not read it.")


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(type, body) of each chunk, read in place (a body is a view into the file, never a copy)."""
    view = memoryview(data)
    pos = len(PNG_SIGNATURE)
    for _ in _bounded():
        if pos + 8 > len(data):
            break
        length, kind = struct.unpack(">I4s", view[pos : pos + 8])
        body = view[pos + 8 : pos + 8 + length]
        if len(body) < length:
            break
        yield kind, body
        pos += 12 + length
        if kind == b"IEND":
            break


class _Inflater:
    """Inflates compressed text chunks within one budget for the whole file (Pillow's own cap is 64 MiB)."""

    def __init__(self) -> None:
        self.left = _MAX_TEXT

    def __call__(self, body: bytes | memoryview) -> bytes | None:
        if self.left <= 0:
            return None
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(body, self.left)
        except zlib.error:
            return None
        self.left -= len(text)
        return None if inflater.unconsumed_tail else text


def _png_metadata(data: bytes) -> tuple[dict[str, str], bytes | None]:
    """The `parameters` and `comment` text chunks (a later one of the same keyword wins, as in Pillow) and the
    eXIf chunk of a PNG. Other keywords are never decoded; compressed text inflates within `_MAX_TEXT` in all."""
    texts: dict[str, str] = {}
    exif: bytes | None = None
    inflate = _Inflater()
    for kind, body in _png_chunks(data):
        if kind == b"eXIf":
            exif = bytes(body)
            continue
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        keyword, sep, _ = bytes(body[: _KEYWORD_MAX + 1]).partition(b"\x00")
        key = keyword.decode("latin-1")
        if not sep or key not in _TEXT_KEYS:
            continue
        rest = body[len(keyword) + 1 :]
        if kind == b"tEXt":
            texts[key] = bytes(rest).decode("latin-1")
        elif kind == b"zTXt" and rest:
            text = inflate(rest[1:])
            if text is not None:
                texts[key] = text.decode("latin-1")
        elif kind == b"iTXt" and len(rest) >= 2:
            compressed, _method = rest[0], rest[1]
            _language, _, tail = bytes(rest[2:]).partition(b"\x00")
            _translated, _, value = tail.partition(b"\x00")
            text = inflate(value) if compressed else value
            if text is not None:
                texts[key] = text.decode("utf-8", errors="replace")
    return texts, exif


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, memoryview]]:
    """(marker, body) for each JPEG header segment up to the start of scan, read in place."""
    view = memoryview(data)
    pos = 2
    for _ in _bounded():
        if pos + 4 > len(data) or data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", view[pos + 2 : pos + 4])
        if length < 2:
            break
        yield marker, view[pos + 4 : pos + 2 + length]
        if marker in (0xDA, 0xD9):  # start of scan / end of image: the header is over
            break
        pos += 2 + length


def _jpeg_metadata(data: bytes) -> tuple[dict[str, str], bytes | None]:
    texts: dict[str, str] = {}
    exif: bytes | None = None
    for marker, body in _jpeg_segments(data):
        if marker == 0xE1 and bytes(body[:6]) == b"Exif\x00\x00" and exif is None:
            exif = bytes(body)
        elif marker == 0xFE:
            texts["comment"] = bytes(body).decode("utf-8", errors="ignore")
    return texts, exif


def _webp_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    view = memoryview(data)
    pos = 12
    for _ in _bounded():
        if pos + 8 > len(data):
            break
        kind, length = struct.unpack("<4sI", view[pos : pos + 8])
        yield kind, view[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)


def _webp_exif(data: bytes) -> bytes | None:
    for kind, body in _webp_chunks(data):
        if kind == b"EXIF":
            return bytes(body) if bytes(body[:6]) == b"Exif\x00\x00" else b"Exif\x00\x00" + bytes(body)
    return None


def check_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[str, int, int]:
    """("PNG" | "JPEG" | "WEBP", width, height) of an attachment, read from its header before any decoding.

    Raises InvalidParamsError if the file is too large, not one of those formats, or has too many pixels
    (which also stops decompression bombs: a few KB that would inflate to gigabytes).
    """
    if len(data) > max_bytes:
        raise InvalidParamsError(
            f"The image is {_size(len(data))}; this server accepts files up to {_size(max_bytes)}."
        )
    if data.startswith(PNG_SIGNATURE):
        image_format, size = "PNG", _png_size(data)
    elif data.startswith(b"\xff\xd8\xff"):
        image_format, size = "JPEG", _jpeg_size(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        image_format, size = "WEBP", _webp_size(data)
    else:
        raise InvalidParamsError("That file is not a PNG, JPEG or WebP image.")
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise InvalidParamsError(f"That {image_format} file is damaged: its size cannot be read.")
    width, height = size
    # Every size the file declares (a second IHDR, an animation frame, another SOF) counts: a decoder may use it.
    for other_w, other_h in [size, *_other_sizes(image_format, data)]:
        if other_w * other_h > max_pixels:
            raise InvalidParamsError(
                f"The image is {other_w}x{other_h} ({other_w * other_h:,} pixels); this server accepts at most "
                f"{max_pixels:,} pixels."
            )
    return image_format, width, height


def _other_sizes(image_format: str, data: bytes) -> list[tuple[int, int]]:
    """Every size declared in the file besides its first: PNG's IHDR and APNG frame (fcTL) chunks, JPEG's frame
    headers, WebP's image chunks."""
    found: list[tuple[int, int]] = []
    if image_format == "PNG":
        for kind, body in _png_chunks(data):
            if kind == b"IHDR" and len(body) >= 8:
                found.append(struct.unpack(">II", body[:8]))
            elif kind == b"fcTL" and len(body) >= 12:
                found.append(struct.unpack(">II", body[4:12]))
    elif image_format == "JPEG":
        for marker, body in _jpeg_segments(data):
            if marker in _SOF_MARKERS and len(body) >= 5:
                height, width = struct.unpack(">HH", body[1:5])
                found.append((width, height))
    else:
        for kind, body in _webp_chunks(data):
            if kind == b"ANMF" and len(body) >= 12:
                found.append((int.from_bytes(body[6:9], "little") + 1, int.from_bytes(body[9:12], "little") + 1))
    return [(int(w), int(h)) for w, h in found]


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR" or len(data) < 24:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, body in _jpeg_segments(data):
        if marker in _SOF_MARKERS and len(body) >= 5:
            height, width = struct.unpack(">HH", body[1:5])
            return int(width), int(height)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    for kind, body in _webp_chunks(data):
        if kind == b"VP8X" and len(body) >= 10:
            width = int.from_bytes(body[4:7], "little") + 1
            height = int.from_bytes(body[7:10], "little") + 1
            return width, height
        if kind == b"VP8 " and len(body) >= 10 and bytes(body[3:6]) == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", body[6:10])
            return width & 0x3FFF, height & 0x3FFF
        if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None
