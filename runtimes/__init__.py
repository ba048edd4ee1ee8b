"""Runtimes: one small runner class per runtime behind one interface (runtimes.base.Runner).

Runner classes are imported lazily so that, say, running ONNX never imports TensorFlow.
"""
from __future__ import annotations

import importlib

from edgeport.backends import missing_backend
from edgeport.runtimes.base import Runner, RunnerError

_RUNNERS = {
    "torch": ("edgeport.runtimes.torch_runner", "TorchRunner"),
    "onnxruntime": ("edgeport.runtimes.onnxruntime_runner", "OnnxRuntimeRunner"),
    "savedmodel": ("edgeport.runtimes.savedmodel_runner", "SavedModelRunner"),
    "tflite": ("edgeport.runtimes.tflite_runner", "TFLiteRunner"),
    "executorch": ("edgeport.runtimes.executorch_runner", "ExecuTorchRunner"),
    "openvino": ("edgeport.runtimes.openvino_runner", "OpenVINORunner"),
    "coreml": ("edgeport.runtimes.coreml_runner", "CoreMLRunner"),
}

RUNTIMES = tuple(_RUNNERS)


def unavailable_reason(runtime: str) -> str | None:
    """Why ``runtime`` cannot run on this machine (None: it can); see ``Runner.unavailable_reason``."""
    return runner_class(runtime).unavailable_reason()


def runner_class(runtime: str) -> type[Runner]:
    """Return the runner class for a runtime name (see RUNTIMES)."""
    try:
        module, name = _RUNNERS[runtime]
    except KeyError:
        raise RunnerError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}") from None
    missing = missing_backend(runtime)
    if missing:  # a sentence with the install command rather than the ImportError of its runner module
        raise RunnerError(f"runtime {runtime} {missing}")
    return getattr(importlib.import_module(module), name)


__all__ = ["Runner", "RunnerError", "RUNTIMES", "runner_class", "unavailable_reason"]
