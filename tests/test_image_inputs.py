"""Every kind of evaluation image: odd but valid ones are read correctly, broken ones are
reported per file with a reason (never a crash), including fuzzed bytes."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeport.validation.dataset import load_eval_arrays, open_image, scan_eval_set
from edgeport.validation.preprocess import Preprocessing


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels but holds almost no data (a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_unusual_but_valid_images_are_read_correctly(tmp_path):
    d = tmp_path / "eval" / "female"
    d.mkdir(parents=True)
    (tmp_path / "eval" / "male").mkdir()
    red = Image.new("RGB", (20, 10), (255, 0, 0))
    (d / "gray.png").write_bytes(_save(red.convert("L"), "PNG"))
    rgba = Image.new("RGBA", (20, 10), (0, 0, 255, 0))  # fully transparent blue: composited on white
    (d / "rgba.png").write_bytes(_save(rgba, "PNG"))
    (d / "palette.gif").write_bytes(_save(red.convert("P"), "GIF"))
    (d / "cmyk.jpg").write_bytes(_save(red.convert("CMYK"), "JPEG", quality=95))
    (d / "deep16.png").write_bytes(_save(Image.fromarray(np.full((10, 20), 65535, np.uint16)), "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    (d / "rotated.jpg").write_bytes(_save(red, "JPEG", exif=exif.tobytes()))
    (d / "visage-ünïcødé-顔.png").write_bytes(_save(red, "PNG"))
    (tmp_path / "eval" / "male" / "m.png").write_bytes(_save(red, "PNG"))

    assert open_image(d / "rotated.jpg").size == (10, 20)  # upright: EXIF applied
    assert open_image(d / "deep16.png").getpixel((0, 0)) == (255, 255, 255)  # 16-bit white stays white
    assert open_image(d / "rgba.png").getpixel((0, 0)) == (255, 255, 255)
    r, g, b = open_image(d / "cmyk.jpg").getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60
    ev = scan_eval_set(tmp_path / "eval", ["female", "male"])
    inputs, labels, paths = load_eval_arrays(ev, Preprocessing(height=8, width=8), progress=False)
    assert ev.skipped == [] and len(inputs) == 8 and inputs.shape[1:] == (3, 8, 8)
    assert any("顔" in p.name for p in paths)


def test_each_bad_input_is_reported_and_counted(tmp_path, faces_dir):
    root = tmp_path / "eval"
    for label in ("female", "male", "empty"):
        (root / label).mkdir(parents=True)
    good = next(faces_dir.glob("female/*.jpg")).read_bytes()
    (root / "female" / "ok.jpg").write_bytes(good)
    (root / "female" / "bomb.png").write_bytes(_png_with_header(100_000, 100_000))
    (root / "female" / "pdf.jpg").write_bytes(b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n<<>>\nendobj\n")
    (root / "female" / "scan.svg").write_text("<svg/>")
    (root / "male" / "ok.jpg").write_bytes(good)
    (root / "empty" / ".DS_Store").write_bytes(b"\0")
    ev = scan_eval_set(root, ["female", "male", "empty"])
    inputs, _, _ = load_eval_arrays(ev, Preprocessing(height=8, width=8), progress=False)
    reasons = {s.path: s.reason for s in ev.skipped}
    assert len(inputs) == 2
    assert "decompression bomb" in reasons["female/bomb.png"]
    assert "not a readable image" in reasons["female/pdf.jpg"]
    assert "not an image extension" in reasons["female/scan.svg"]
    assert "empty class folder" in reasons["empty/"] and "hidden" in reasons["empty/.DS_Store"]


JPEG = _save(Image.linear_gradient("L").resize((32, 32)).convert("RGB"), "JPEG")
PNG = _save(Image.linear_gradient("L").resize((32, 32)), "PNG")


@st.composite
def malformed(draw) -> bytes:
    base = draw(st.sampled_from([JPEG, PNG, b""]))
    kind = draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if kind == "random" or not base:
        return draw(st.binary(max_size=2048))
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base)))]
    if kind == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    cut = draw(st.integers(0, len(base)))
    return base[:cut] + draw(st.binary(max_size=256)) + base[cut:]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=malformed())
def test_fuzzed_bytes_give_an_image_or_a_clean_error(tmp_path, data):
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(data)
    try:
        img = open_image(path)
    except ValueError as exc:  # the only way a bad file may fail: reported with a reason
        assert str(exc)
    else:
        assert img.mode == "RGB" and img.size[0] > 0 and img.size[1] > 0
