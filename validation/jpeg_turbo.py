"""JPEG decoding through libjpeg-turbo's TurboJPEG API (simplejpeg), to exactly Pillow's pixels.

Pillow decodes a JPEG with the same libjpeg-turbo, but around it runs its header parser in Python
(about 25 us for a 200x200 JPEG, a dozen function calls a marker), a block-wise load loop and a
copy of every row into its 4-byte RGB layout. simplejpeg reads the header in C and decodes into
a numpy array in one call: a 200x200 JPEG decoded at half scale and resized to 48x48 takes 223
instead of 289 us (gender-vit's evaluation images, medians; docs/decisions/serving-decode.md). The
pixels must be Pillow's, bit for bit, since transformers' processors are given Pillow's and the
harness's judgement must hold for what is served; so this path takes only what it can decode
identically and leaves everything else to Pillow:

- baseline, extended or progressive Huffman JPEGs whose colour is YCbCr or grey (libjpeg's own
  conversion, as in Pillow; grey is replicated to RGB as Pillow's ``convert("RGB")`` does);
- no APP1 segment: EXIF and XMP are where Pillow reads an orientation from
  (``ImageOps.exif_transpose``), so an image that may need turning goes to Pillow;
- within Pillow's decompression-bomb limit (Pillow's path then raises its own error);
- a reduced scale (``draft``) chosen as Pillow's ``JpegImageFile.draft`` chooses it (1/2, 1/4 or
  1/8), and only where TurboJPEG's own choice of scale for that output size is the same one.

Anything libjpeg warns about (truncated or corrupt data) also goes back to Pillow, whose errors the
callers already turn into readable ones. Before its first use in a process the path decodes
three test JPEGs both ways, at full and half scale, and turns itself off if any pixel differs
(another libjpeg-turbo build behind either package, say); without simplejpeg installed it is off
and Pillow decodes everything, with the same result.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

try:
    import simplejpeg
except ImportError:  # optional: Pillow decodes the same pixels, only slower
    simplejpeg = None

# Start-of-frame markers this path takes: baseline, extended and progressive Huffman coding.
_SOF_TAKEN = {0xC0, 0xC1, 0xC2}
# Every other start-of-frame (lossless, hierarchical, arithmetic): left to Pillow. 0xC4 (DHT),
# 0xC8 (reserved) and 0xCC (DAC) share the range but are no frames.
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_APP1 = 0xE1
_SOS = 0xDA
# The scales below 1 that TurboJPEG offers, smallest first: tjGetScalingFactors, which simplejpeg
# searches from the smallest up for the first whose output is at least the size asked for.
_TURBO_SCALES = ((1, 8), (1, 4), (3, 8), (1, 2), (5, 8), (3, 4), (7, 8))


@dataclass(frozen=True)
class TurboJpeg:
    """A JPEG this path decodes (``peek_jpeg``), its header read; ``size`` is (width, height)."""

    data: bytes
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def available() -> bool:
    """Whether this path is on in this process: simplejpeg installed and agreeing with Pillow. The
    first call runs the self-check (about 30 ms), which a server does before it reports ready."""
    return simplejpeg is not None and _agrees_with_pillow()


def decoder_name() -> str:
    """What decodes the JPEGs this path takes, in this process (for a server's metadata)."""
    return "libjpeg-turbo via simplejpeg (Pillow's pixels); Pillow for the rest" if available() else "Pillow"


def peek_jpeg(data: bytes) -> TurboJpeg | None:
    """``data`` as a JPEG this path decodes to Pillow's pixels, or None: not a JPEG, one Pillow
    must decode (see the module's docstring), or simplejpeg missing or disagreeing with Pillow."""
    if simplejpeg is None or data[:3] != b"\xff\xd8\xff" or not _markers_taken(data):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray"):
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        return None
    if not _agrees_with_pillow():  # simplejpeg is installed: checked first thing
        return None
    return TurboJpeg(bytes(data), width, height)


def decode_jpeg(jpeg: TurboJpeg, size: tuple[int, int] | None = None) -> Image.Image | None:
    """The RGB image Pillow would decode from ``jpeg`` (with ``Image.draft(None, size)`` when
    ``size`` is given), or None when this path cannot promise that (then decode with Pillow)."""
    scale = pillow_draft_scale(jpeg.width, jpeg.height, size) if size is not None else 1
    want_w, want_h = -(-jpeg.width // scale), -(-jpeg.height // scale)
    if turbo_scale(jpeg.width, jpeg.height, want_w, want_h) != (1, scale):
        return None
    try:
        rgb = simplejpeg.decode_jpeg(jpeg.data, colorspace="RGB", min_width=want_w, min_height=want_h)
    except ValueError:  # libjpeg warned or failed (strict mode): Pillow's path answers it
        return None
    if rgb.shape != (want_h, want_w, 3):
        return None
    return Image.fromarray(rgb, "RGB")


def pillow_draft_scale(width: int, height: int, size: tuple[int, int]) -> int:
    """The DCT scale (1, 2, 4 or 8: decoded at 1/scale) Pillow's ``JpegImageFile.draft(None, size)``
    picks for a ``width`` x ``height`` JPEG: the largest that leaves it at least ``size``."""
    fits = min(width // size[0], height // size[1])
    return next(s for s in (8, 4, 2, 1) if fits >= s or s == 1)


def turbo_scale(width: int, height: int, min_width: int, min_height: int) -> tuple[int, int]:
    """The scale (numerator, denominator) simplejpeg decodes a ``width`` x ``height`` JPEG at when
    asked for at least ``min_width`` x ``min_height``: its smallest whose output is that large."""
    for num, den in _TURBO_SCALES:
        if -(-width * num // den) >= min_width and -(-height * num // den) >= min_height:
            return num, den
    return 1, 1


def _markers_taken(data: bytes) -> bool:
    """Whether the segments before the first scan are ones this path takes (see the docstring):
    a frame it decodes, and no APP1."""
    i, n, framed = 2, len(data), False
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == _SOS:
            return framed
        if marker == _APP1 or marker in _SOF_OTHER:
            return False
        framed = framed or marker in _SOF_TAKEN
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return False


@lru_cache(maxsize=1)
def _agrees_with_pillow() -> bool:
    """Whether simplejpeg decodes test JPEGs (4:2:0, progressive and grey, odd sizes, full and
    half scale) to Pillow's pixels in this process."""
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 67 * 45 * 3).reshape(45, 67, 3)
    pixels = np.clip(smooth + rng.normal(0, 40, smooth.shape), 0, 255).astype(np.uint8)
    for mode, options in (("RGB", {"quality": 85, "subsampling": 2}), ("RGB", {"quality": 70, "progressive": True}),
                          ("L", {"quality": 90})):
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").convert(mode).save(buffer, "JPEG", **options)
        data = buffer.getvalue()
        for scale in (1, 2):
            with Image.open(io.BytesIO(data)) as img:
                if scale > 1:
                    img.draft(None, (img.width // scale, img.height // scale))
                theirs = np.asarray(img.convert("RGB"))
            want_w, want_h = -(-67 // scale), -(-45 // scale)
            try:
                ours = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=want_w, min_height=want_h)
            except ValueError:
                return False
            if ours.shape != theirs.shape or not np.array_equal(ours, theirs):
                return False
    return True
