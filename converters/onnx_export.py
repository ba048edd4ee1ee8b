"""PyTorch (Hugging Face) -> ONNX fp32, with optimum's exporter.

The default opset is 20, the first with a ``Gelu`` operator: onnx2tf turns it into the
TFLite ``GELU`` builtin. At opset 18 GELU is exported as Erf arithmetic, which onnx2tf
either emits as a Flex op or replaces with a pseudo-Erf whose int8 form divides by zero.

optimum's ViT export config marks channels, height and width as dynamic as well as the
batch. The model itself only works at its trained size, and onnx2tf cannot lay out a graph
whose channel count is unknown, so after export the input is pinned to (batch, C, H, W)
with the batch axis left dynamic.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

from converters.atomic import atomic_path

DEFAULT_OPSET = 20


def export_onnx(
    source: str,
    out_path: str | Path,
    *,
    revision: str | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``source`` (a local model directory or a hub id) to ``out_path`` as ONNX fp32.

    The result has one input ``pixel_values`` (batch, C, H, W) and one output ``logits``
    (batch, num_labels), the batch axis dynamic.
    """
    import onnx
    from onnx.tools import update_model_dims
    from optimum.exporters.onnx import main_export
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, revision=revision)
    size = config.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    channels = getattr(config, "num_channels", 3)

    with tempfile.TemporaryDirectory(prefix="edgeport-onnx-") as tmp, _quiet():
        main_export(
            source,
            output=tmp,
            task="image-classification",
            opset=opset,
            revision=revision,
            device="cpu",
            do_validation=False,  # edgeport validates every variant on real images itself
        )
        model = onnx.load(os.path.join(tmp, "model.onnx"))

    model = update_model_dims.update_inputs_outputs_dims(
        model,
        {"pixel_values": ["batch_size", channels, height, width]},
        {"logits": ["batch_size", config.num_labels]},
    )
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    with atomic_path(out_path) as tmp_path:
        onnx.save(model, str(tmp_path))
    return Path(out_path)


@contextlib.contextmanager
def _quiet():
    """Hide the tracer's known ViT warnings (shape checks traced as constants) and optimum's chatter."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    optimum_logger = logging.getLogger("optimum")
    optimum_level = optimum_logger.level
    optimum_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        hf_logging.set_verbosity(level)
        optimum_logger.setLevel(optimum_level)
