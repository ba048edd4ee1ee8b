"""onnx2tf's TensorFlow path on square tensors (converters/onnx2tf_layout_fix.py).

With num_patches == hidden_size (64 px, patch 8, hidden 64), ViT's patch-embedding Reshape
output is [1, 64, 64]: onnx2tf 2.6.9 cannot tell its layout from its shape, took it as
channel-last, and wrote a SavedModel 0.04 off PyTorch (budget 1e-4). The fix decides such
tensors from their values.
"""
from __future__ import annotations

import numpy as np

from edgeport.model_source import resolve_source
from edgeport.pipeline import export_model
from edgeport.random_model import make_random_vit
from edgeport.runtimes import runner_class


def test_savedmodel_of_a_vit_with_square_tensors_matches_pytorch(calib_dir, tmp_path):
    model = make_random_vit(tmp_path / "square-vit", image_size=64, patch_size=8, hidden_size=64, num_heads=2,
                            num_layers=1, intermediate_size=128)
    out = tmp_path / "out"
    result = export_model("square-vit", resolve_source(str(model)), out, variants=["savedmodel-fp32"],
                          images_dir=calib_dir, progress=False, isolate=False)
    assert result.failed == [], result.manifest
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with runner_class("torch")(str(model)) as ref, runner_class("savedmodel")(str(out / "savedmodel")) as tf:
        diff = float(np.abs(tf.infer(batch) - ref.infer(batch)).max())
    assert diff < 1e-4, diff
