"""validation.jpeg_turbo: JPEGs decoded through libjpeg-turbo's own API come out as Pillow's very
pixels (every layout, scale and size tried here), and what it cannot promise goes to Pillow."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgeport.validation import jpeg_turbo
from edgeport.validation.dataset import open_image, peek_image
from edgeport.validation.jpeg_turbo import TurboJpeg, decode_jpeg, peek_jpeg, pillow_draft_scale


def _jpeg(width: int, height: int, mode: str = "RGB", seed: int = 0, **options) -> bytes:
    """A JPEG of a noisy gradient (edges and flat parts, so that every DCT scale shows)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width * height * 3).reshape(height, width, 3)
    pixels = np.clip(ramp + rng.normal(0, 50, ramp.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert(mode).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _pillow_only(monkeypatch: pytest.MonkeyPatch, data: bytes, draft=None) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(jpeg_turbo, "simplejpeg", None)
        assert not isinstance(peek_image(data), TurboJpeg)
        return np.asarray(open_image(data, draft=draft))


LAYOUTS = {
    "4:2:0": {"mode": "RGB", "quality": 85, "subsampling": 2},
    "4:2:2": {"mode": "RGB", "quality": 90, "subsampling": 1},
    "4:4:4": {"mode": "RGB", "quality": 95, "subsampling": 0},
    "progressive": {"mode": "RGB", "quality": 75, "progressive": True},
    "restart markers": {"mode": "RGB", "quality": 80, "restart_marker_blocks": 3},
    "grey": {"mode": "L", "quality": 90},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("size", [(16, 16), (67, 45), (200, 200), (333, 1001)])
def test_turbo_decodes_pillows_pixels_at_every_scale(monkeypatch, layout, size):
    assert jpeg_turbo.simplejpeg is not None, "simplejpeg is in requirements.lock: the fast path must be on"
    options = dict(LAYOUTS[layout])
    data = _jpeg(*size, mode=options.pop("mode"), **options)
    peeked = peek_image(data)
    assert isinstance(peeked, TurboJpeg) and peeked.size == size
    for scale in (1, 2, 4, 8):  # a draft size that makes Pillow pick each scale
        def draft(w: int, h: int, scale: int = scale) -> tuple[int, int]:
            return max(1, w // scale), max(1, h // scale)
        expected = _pillow_only(monkeypatch, data, draft)
        turbo = decode_jpeg(peeked, draft(*size))
        assert turbo is not None and np.array_equal(np.asarray(turbo), expected), (layout, size, scale)
        assert np.array_equal(np.asarray(open_image(data, draft=draft)), expected), (layout, size, scale)
    assert np.array_equal(np.asarray(open_image(data)), _pillow_only(monkeypatch, data))


def test_pillow_draft_scale_is_pillows_choice():
    data = _jpeg(200, 120)
    for size in [(200, 120), (100, 60), (99, 59), (67, 40), (50, 30), (49, 29), (25, 15), (24, 14), (1, 1), (400, 400)]:
        with Image.open(io.BytesIO(data)) as img:
            img.draft(None, size)
            assert img.size == tuple(-(-d // pillow_draft_scale(200, 120, size)) for d in (200, 120)), size


def test_what_turbo_cannot_promise_goes_to_pillow(monkeypatch, tmp_path):
    red = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate to display: only Pillow's path turns it
    buffer = io.BytesIO()
    red.save(buffer, "JPEG", exif=exif.tobytes())
    rotated = buffer.getvalue()
    assert peek_jpeg(rotated) is None and open_image(rotated).size == (20, 40)
    cmyk = io.BytesIO()
    red.convert("CMYK").save(cmyk, "JPEG")
    assert peek_jpeg(cmyk.getvalue()) is None and open_image(cmyk.getvalue()).getpixel((5, 5))[0] > 200
    assert peek_jpeg(b"\x89PNG\r\n\x1a\n") is None
    plain = _jpeg(40, 20)
    assert peek_jpeg(plain) is not None
    sof = plain.index(b"\xff\xc0")
    assert peek_jpeg(plain[:sof + 1] + b"\xc3" + plain[sof + 2:]) is None  # a lossless frame: Pillow's

    # tiny: asked for 2x2, TurboJPEG would decode at 3/8 where Pillow decodes at 1/2
    tiny = _jpeg(3, 3)
    peeked = peek_jpeg(tiny)
    assert peeked is not None and decode_jpeg(peeked, (1, 1)) is None
    assert np.array_equal(np.asarray(open_image(tiny, draft=lambda w, h: (1, 1))),
                          _pillow_only(monkeypatch, tiny, lambda w, h: (1, 1)))

    # truncated: libjpeg warns, so Pillow's path answers with its own readable error, as before
    whole = _jpeg(120, 80)
    truncated = whole[: len(whole) // 2]
    assert decode_jpeg(TurboJpeg(truncated, 120, 80)) is None
    with pytest.raises(ValueError, match="truncated") as turbo_error:
        open_image(truncated)
    with monkeypatch.context() as m:
        m.setattr(jpeg_turbo, "simplejpeg", None)
        with pytest.raises(ValueError, match="truncated") as pillow_error:
            open_image(truncated)
    assert str(turbo_error.value) == str(pillow_error.value)

    # over Pillow's pixel limit: Pillow's decompression-bomb guard refuses it, as before
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert peek_jpeg(whole) is None
    with pytest.raises(ValueError, match="decompression bomb"):
        open_image(whole)


def test_files_and_bytes_decode_alike(tmp_path, monkeypatch):
    data = _jpeg(90, 70)
    path = tmp_path / "face.jpg"
    path.write_bytes(data)
    expected = _pillow_only(monkeypatch, data)
    for source in (path, str(path), data, io.BytesIO(data), peek_image(path)):
        assert np.array_equal(np.asarray(open_image(source)), expected), type(source)


def test_the_self_check_turns_the_path_off_when_pixels_differ(monkeypatch):
    real = jpeg_turbo.simplejpeg

    class Shifted:  # a decoder whose pixels are one level off Pillow's
        @staticmethod
        def decode_jpeg(data, **kw):
            return np.clip(real.decode_jpeg(data, **kw).astype(np.int16) + 1, 0, 255).astype(np.uint8)
        decode_jpeg_header = staticmethod(real.decode_jpeg_header)

    jpeg_turbo._agrees_with_pillow.cache_clear()
    try:
        monkeypatch.setattr(jpeg_turbo, "simplejpeg", Shifted)
        assert peek_jpeg(_jpeg(64, 64)) is None
        monkeypatch.setattr(jpeg_turbo, "simplejpeg", real)
        jpeg_turbo._agrees_with_pillow.cache_clear()
        assert isinstance(peek_jpeg(_jpeg(64, 64)), TurboJpeg)
    finally:
        jpeg_turbo._agrees_with_pillow.cache_clear()
