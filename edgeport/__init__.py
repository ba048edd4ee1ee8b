"""edgeport: ship Hugging Face image classifiers to ONNX, TFLite, SavedModel, ExecuTorch, OpenVINO and
Core ML, validated against the PyTorch reference.

The Python API (``edgeport.api``): ``export``, ``validate`` (a ``Report``), ``gate`` (a
``GateResult``), ``load`` (a ``Classifier`` over the validated variant), ``init`` (a starter
``edgeport.toml``) and ``distill`` (an edge-sized student of a teacher model). They are imported on
first use, so that ``import edgeport`` stays light.
"""
from __future__ import annotations

import logging as _logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# transformers imports torchao (an ExecuTorch dependency) whenever it is installed, and torchao
# then warns for each CUDA-only kernel library it cannot load on a CPU build of torch: noise in
# every step's log for kernels edgeport never uses (PT2E quantization is pure Python).
_logging.getLogger("torchao").setLevel(_logging.ERROR)

__all__ = ["__version__", "export", "validate", "gate", "load", "init", "distill", "Report", "GateResult"]
_API = set(__all__) - {"__version__"}

if TYPE_CHECKING:
    from edgeport.api import GateResult, Report, distill, export, gate, init, load, validate


def __getattr__(name: str) -> Any:
    if name in _API:
        from edgeport import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgeport' has no attribute {name!r}")
