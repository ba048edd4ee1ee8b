"""A faster start for a process that runs one model step: packages its libraries import only
because they are installed, hidden from it.

transformers imports scikit-learn (assisted generation's ``roc_curve``), SciPy (object-detection
losses) and torchao (its quantizer) whenever they are installed; Keras, under TensorFlow, imports
scikit-learn for its estimator wrappers; onnxruntime's quantization and model tools import torch
for an LLM weight quantizer. They are installed here for other steps (OpenVINO's NNCF, ExecuTorch's
int8, the PyTorch reference). Measured: the validation worker running the PyTorch reference on
16 gender-vit images, 5.6 -> 3.8 s of CPU; gender-vit's onnx-fp32 step 5.8 -> 4.2 s,
onnx-int8-dynamic 2.0 -> 0.6 s, savedmodel-fp32 13.4 -> 11.9 s; `edgeport export-all` on the two
bundled models 153.5 / 152.8 -> 137.5 / 136.9 s (alternating runs), the same files (the SavedModel
differs between any two runs) and the same reports (docs/decisions/lean-child-processes.md).

Only in edgeport's own child processes (``edgeport.stage``, ``validation.worker``, the onnx2tf
child), each running one step: hiding a package in a user's process would break their imports.
Who hides what is declared beside the step: ``VariantSpec.unused_packages`` and
``Runner.unused_packages``. A wrong entry fails that step with an ImportError naming the package.
"""
from __future__ import annotations

import sys

# Imported by transformers at start-up when installed; never by an image classifier's forward.
UNUSED_BY_CLASSIFIERS = ("sklearn", "scipy", "torchao")
# Imported by Keras (under TensorFlow) for its scikit-learn wrappers.
UNUSED_BY_KERAS = ("sklearn",)
# Imported by onnxruntime.tools (model utilities, the quantizer's shape inference) for torch helpers.
UNUSED_BY_ORT_TOOLS = ("torch",)


def hide_unused_packages(packages: tuple[str, ...]) -> list[str]:
    """Make ``packages`` look absent to this process (call before importing the libraries): their
    ``sys.modules`` entry set to None, so ``importlib.util.find_spec`` finds nothing and an import
    raises ImportError. A package already imported is left alone. Returns the names hidden."""
    hidden = [name for name in packages if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    return hidden


def hiding_code(packages: tuple[str, ...]) -> str:
    """Python source that calls ``hide_unused_packages(packages)``, for a ``python -c`` child."""
    return ("from edgeport.runtimes.lean_start import hide_unused_packages\n"
            f"hide_unused_packages({tuple(packages)!r})\n")
