"""Image metadata written and read as A1111 v1.10.1 does, and upload checks that never decode pixels."""

import io
import struct
import zlib

import piexif
import piexif.helper
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.errors import InvalidParamsError
from engine.images import check_upload, encode_jpeg, encode_png, encode_webp, read_infotext

INFOTEXT = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: DPM++ 2M, Seed: 1, Size: 64x48"
UNICODE_INFOTEXT = "猫 — ñ\nSteps: 20, Sampler: Euler a, Seed: 1"


def image(mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (64, 48), "red")


def png_chunk_kinds(data: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        kinds.append(kind)
        pos += 12 + length
    return kinds


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_png_latin1_text_goes_in_a_text_chunk() -> None:
    assert b"tEXt" in png_chunk_kinds(encode_png(image(), INFOTEXT))


def test_png_unicode_text_goes_in_an_itxt_chunk() -> None:
    assert b"iTXt" in png_chunk_kinds(encode_png(image(), UNICODE_INFOTEXT))


def test_png_parameters_are_what_pillow_and_a1111_read() -> None:
    assert Image.open(io.BytesIO(encode_png(image(), UNICODE_INFOTEXT))).info["parameters"] == UNICODE_INFOTEXT


def test_png_round_trip() -> None:
    assert read_infotext(encode_png(image(), INFOTEXT)) == INFOTEXT


def test_png_unicode_round_trip() -> None:
    assert read_infotext(encode_png(image(), UNICODE_INFOTEXT)) == UNICODE_INFOTEXT


def test_png_compressed_text_chunks_are_read() -> None:
    for text in (INFOTEXT, UNICODE_INFOTEXT):
        info = PngInfo()
        info.add_text("parameters", text, zip=True)
        out = io.BytesIO()
        image().save(out, format="PNG", pnginfo=info)
        assert read_infotext(out.getvalue()) == text


def test_png_text_after_the_image_data_is_read() -> None:
    plain = io.BytesIO()
    image().save(plain, format="PNG")
    data = plain.getvalue()
    iend = data.rindex(b"IEND") - 4
    data = data[:iend] + png_chunk(b"tEXt", b"parameters\x00" + INFOTEXT.encode("latin-1")) + data[iend:]
    assert read_infotext(data) == INFOTEXT


def test_png_exif_user_comment_wins_over_parameters() -> None:
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump("from exif", "unicode")}})
    info = PngInfo()
    info.add_text("parameters", INFOTEXT)
    out = io.BytesIO()
    image().save(out, format="PNG", pnginfo=info, exif=exif)
    assert read_infotext(out.getvalue()) == "from exif"


def test_png_without_metadata_has_no_infotext() -> None:
    out = io.BytesIO()
    image().save(out, format="PNG")
    assert read_infotext(out.getvalue()) is None


def test_jpeg_carries_big_endian_exif_with_a_unicode_user_comment() -> None:
    data = encode_jpeg(image(), UNICODE_INFOTEXT, quality=90)
    exif_bytes = Image.open(io.BytesIO(data)).info["exif"]
    assert exif_bytes[6:8] == b"MM"
    comment = piexif.load(exif_bytes)["Exif"][piexif.ExifIFD.UserComment]
    assert comment == b"UNICODE\x00" + UNICODE_INFOTEXT.encode("utf-16-be")


def test_jpeg_round_trip() -> None:
    assert read_infotext(encode_jpeg(image(), UNICODE_INFOTEXT)) == UNICODE_INFOTEXT


def test_jpeg_from_rgba_is_converted_to_rgb() -> None:
    data = encode_jpeg(image("RGBA"), INFOTEXT)
    assert Image.open(io.BytesIO(data)).mode == "RGB" and read_infotext(data) == INFOTEXT


def test_webp_round_trip() -> None:
    assert read_infotext(encode_webp(image("RGBA"), UNICODE_INFOTEXT)) == UNICODE_INFOTEXT


def test_jpeg_comment_counts_when_there_is_no_exif() -> None:
    out = io.BytesIO()
    image().save(out, format="JPEG", comment=INFOTEXT.encode())
    assert read_infotext(out.getvalue()) == INFOTEXT


def test_ascii_user_comment_is_read() -> None:
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(INFOTEXT, "ascii")}})
    out = io.BytesIO()
    image().save(out, format="JPEG", exif=exif)
    assert read_infotext(out.getvalue()) == INFOTEXT


def test_undefined_user_comment_falls_back_to_utf8() -> None:
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: b"\x00" * 8 + UNICODE_INFOTEXT.encode()}})
    out = io.BytesIO()
    image().save(out, format="JPEG", exif=exif)
    assert read_infotext(out.getvalue()) == UNICODE_INFOTEXT


def test_non_image_has_no_infotext() -> None:
    assert read_infotext(b"GIF89a not supported") is None


def test_check_upload_reads_png_size() -> None:
    assert check_upload(encode_png(image(), ""), max_bytes=10**6, max_pixels=10**6) == ("PNG", 64, 48)


def test_check_upload_reads_jpeg_size() -> None:
    assert check_upload(encode_jpeg(image(), INFOTEXT), max_bytes=10**6, max_pixels=10**6) == ("JPEG", 64, 48)


def test_check_upload_reads_progressive_jpeg_size() -> None:
    out = io.BytesIO()
    image().save(out, format="JPEG", progressive=True)
    assert check_upload(out.getvalue(), max_bytes=10**6, max_pixels=10**6) == ("JPEG", 64, 48)


def test_check_upload_reads_lossy_webp_size() -> None:
    out = io.BytesIO()
    image().save(out, format="WEBP", quality=80)
    assert check_upload(out.getvalue(), max_bytes=10**6, max_pixels=10**6) == ("WEBP", 64, 48)


def test_check_upload_reads_lossless_webp_size() -> None:
    out = io.BytesIO()
    image().save(out, format="WEBP", lossless=True)
    assert check_upload(out.getvalue(), max_bytes=10**6, max_pixels=10**6) == ("WEBP", 64, 48)


def test_check_upload_reads_extended_webp_size() -> None:
    data = encode_webp(image(), INFOTEXT)
    assert b"VP8X" in data[:40]
    assert check_upload(data, max_bytes=10**6, max_pixels=10**6) == ("WEBP", 64, 48)


def test_check_upload_refuses_too_many_bytes() -> None:
    with pytest.raises(InvalidParamsError, match="accepts files up to"):
        check_upload(encode_png(image(), ""), max_bytes=100, max_pixels=10**6)


def test_check_upload_refuses_too_many_pixels() -> None:
    with pytest.raises(InvalidParamsError, match="64x48"):
        check_upload(encode_png(image(), ""), max_bytes=10**6, max_pixels=1000)


def test_check_upload_refuses_a_decompression_bomb_from_its_header() -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
    with pytest.raises(InvalidParamsError, match="100000x100000"):
        check_upload(bomb, max_bytes=10**6, max_pixels=4 * 1024 * 1024)


def test_check_upload_refuses_other_formats() -> None:
    with pytest.raises(InvalidParamsError, match="not a PNG, JPEG or WebP"):
        check_upload(b"GIF89a\x01\x00\x01\x00", max_bytes=10**6, max_pixels=10**6)


def test_check_upload_refuses_a_truncated_header() -> None:
    with pytest.raises(InvalidParamsError, match="damaged"):
        check_upload(b"\x89PNG\r\n\x1a\n\x00\x00", max_bytes=10**6, max_pixels=10**6)


def novelai_png(comment: str) -> bytes:
    """A PNG as NovelAI saves one: its prompt in `Description`, the settings as JSON in `Comment`."""
    info = PngInfo()
    info.add_text("Title", "AI generated image")
    info.add_text("Description", "1girl, masterpiece")
    info.add_text("Software", "NovelAI")
    info.add_text("Source", "Stable Diffusion 1D44365E")
    info.add_text("Comment", comment)
    buffer = io.BytesIO()
    image().save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_a_novelai_png_reads_as_a1111_reads_it() -> None:
    comment = (
        '{"steps": 28, "sampler": "k_euler_ancestral", "seed": 123, "strength": 0.7, "scale": 11.0, "uc": "lowres"}'
    )
    assert read_infotext(novelai_png(comment)) == (
        "1girl, masterpiece\nNegative prompt: lowres\n"
        "Steps: 28, Sampler: Euler a, CFG scale: 11.0, Seed: 123, Size: 64x48, Clip skip: 2, ENSD: 31337"
    )
    # samplers_map is A1111's lower-cased aliases; anything else is Euler a, as there.
    assert "Sampler: DPM++ 2M," in str(read_infotext(novelai_png(comment.replace("k_euler_ancestral", "k_dpmpp_2m"))))
    assert "Sampler: Euler a," in str(read_infotext(novelai_png(comment.replace("k_euler_ancestral", "nai_smea"))))


def test_a_novelai_png_with_a_broken_comment_has_no_parameters() -> None:
    assert read_infotext(novelai_png("{not json")) is None
    assert read_infotext(novelai_png('{"steps": 28}')) is None
    assert read_infotext(novelai_png("[" * 100000 + "]" * 100000)) is None


def _with_chunks(data: bytes, chunks: bytes) -> bytes:
    """The PNG with `chunks` inserted right after its IHDR."""
    ihdr_end = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    return data[:ihdr_end] + chunks + data[ihdr_end:]


def test_a_png_with_a_second_larger_size_header_is_refused_before_decoding() -> None:
    small = encode_png(image(), "a fox\nSteps: 5")
    huge = struct.pack(">IIBBBBB", 13_000, 13_000, 8, 2, 0, 0, 0)
    crafted = _with_chunks(small, png_chunk(b"IHDR", huge))
    with pytest.raises(InvalidParamsError, match=r"^The image is 13000x13000 \(169,000,000 pixels\)"):
        check_upload(crafted, max_bytes=1 << 20, max_pixels=1 << 20)
    frame = struct.pack(">IIIII", 0, 9000, 9000, 0, 0) + b"\x00" * 6  # an APNG frame header
    with pytest.raises(InvalidParamsError, match=r"^The image is 9000x9000"):
        check_upload(_with_chunks(small, png_chunk(b"fcTL", frame)), max_bytes=1 << 20, max_pixels=1 << 20)
    assert check_upload(small, max_bytes=1 << 20, max_pixels=1 << 20)[0] == "PNG"


def test_a_png_of_countless_tiny_chunks_is_refused_not_read_for_seconds() -> None:
    from engine.images import MAX_CHUNKS

    small = encode_png(image(), "a fox\nSteps: 5")
    crafted = _with_chunks(small, png_chunk(b"tEXt", b"x\x00y") * (MAX_CHUNKS + 10))
    with pytest.raises(InvalidParamsError, match=r"more than 20,000 chunks"):
        read_infotext(crafted)
    with pytest.raises(InvalidParamsError, match=r"more than 20,000 chunks"):
        check_upload(crafted, max_bytes=1 << 22, max_pixels=1 << 20)
