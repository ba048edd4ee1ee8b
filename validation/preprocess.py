"""Image preprocessing read from a model's own ``preprocessor_config.json``.

Written out here instead of calling transformers' image processor at evaluation time
because the exact steps (resize size and filter, rescale, mean/std, layout) must be spelled
out for the mobile hand-off, and every runtime must get byte-identical input. A test checks
that the result equals ``ViTImageProcessor``'s output for the same image.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# PIL resample codes as stored in Hugging Face preprocessor configs.
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class PreprocessingError(ValueError):
    """The preprocessor config asks for something this pipeline does not implement."""


@dataclass(frozen=True)
class Preprocessing:
    """Resize -> rescale -> normalize -> CHW float32, as a ViT image processor does."""

    height: int
    width: int
    resample: int = 2
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)

    @classmethod
    def from_file(cls, path: str | Path) -> "Preprocessing":
        """Read a Hugging Face ``preprocessor_config.json``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PreprocessingError(
                f"{path} not found: the model directory needs its preprocessor_config.json "
                "(save it with AutoImageProcessor.save_pretrained)"
            ) from None
        return cls.from_dict(data, where=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "preprocessor config") -> "Preprocessing":
        if data.get("do_center_crop"):
            raise PreprocessingError(f"{where}: do_center_crop is not supported yet (ViT processors do not crop)")
        size = data.get("size", 224)
        if isinstance(size, int):
            height = width = size
        elif "height" in size and "width" in size:
            height, width = size["height"], size["width"]
        else:
            raise PreprocessingError(
                f"{where}: size {size} is not supported; use {{'height': H, 'width': W}}"
            )
        mean = data.get("image_mean", (0.5, 0.5, 0.5))
        std = data.get("image_std", (0.5, 0.5, 0.5))
        mean = (mean,) * 3 if isinstance(mean, (int, float)) else tuple(mean)
        std = (std,) * 3 if isinstance(std, (int, float)) else tuple(std)
        return cls(
            height=int(height),
            width=int(width),
            resample=int(data.get("resample", 2)),
            do_resize=bool(data.get("do_resize", True)),
            do_rescale=bool(data.get("do_rescale", True)),
            rescale_factor=float(data.get("rescale_factor", 1 / 255)),
            do_normalize=bool(data.get("do_normalize", True)),
            image_mean=tuple(float(m) for m in mean),
            image_std=tuple(float(s) for s in std),
        )

    def to_dict(self) -> dict:
        """The steps as plain data, for reports and the mobile hand-off."""
        d = asdict(self)
        d["resample_name"] = RESAMPLE_NAMES.get(self.resample, str(self.resample))
        d["layout"] = "NCHW"
        return d

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Turn an RGB PIL image into a float32 (C, H, W) array."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self.do_resize and image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), resample=self.resample, reducing_gap=None)
        x = np.asarray(image)
        if self.do_rescale:
            # float64 multiply then float32, the order transformers uses, for identical bits
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        else:
            x = x.astype(np.float32)
        if self.do_normalize:
            mean = np.asarray(self.image_mean, dtype=np.float32)
            std = np.asarray(self.image_std, dtype=np.float32)
            x = (x - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
