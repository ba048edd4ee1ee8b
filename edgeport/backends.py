"""Which optional backends are installed, what each variant needs, and the command that adds it.

edgeport installs as a small core (runs ONNX files, reports, the gate, ``edgeport.load``) plus
pip extras: ``[export]`` (torch, transformers, optimum: making variants from a Hugging Face
model and validating them against its PyTorch reference), one per converter backend
(``[tflite]``, ``[openvino]``, ``[executorch]``, ``[coreml]``, each with ``[export]``) and
``[serve]``. This is the one place that maps a runtime to the extra that makes and runs its
files, and an extra to the modules it brings, so that a missing backend is a sentence with the
install command, never an ImportError, and the default variant list is what this installation
can make.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

# onnx2tf 2.x declares Python >= 3.12 and exact pins that conflict with the tested set, so pip's
# resolver cannot install it beside edgeport (docs/decisions/packaging.md); it works on 3.11 with
# the rest of [tflite], added without its metadata. The version is the one in requirements.lock.
ONNX2TF = "onnx2tf==2.6.9"
ONNX2TF_INSTALL = f"pip install --no-deps --ignore-requires-python {ONNX2TF}"


@dataclass(frozen=True)
class Backend:
    """One pip extra of edgeport: the modules it brings, and how to install it."""

    name: str
    modules: tuple[str, ...]
    purpose: str
    extra_step: str | None = None  # a command pip's resolver cannot do for the extra (see ONNX2TF)

    @property
    def install(self) -> str:
        """The command(s) that install this backend into the current environment."""
        command = f"pip install 'edgeport[{self.name}]'"
        return f"{command} && {self.extra_step}" if self.extra_step else command


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("export", ("torch", "transformers", "optimum", "onnx"),
            "making variants from a Hugging Face model, and validating them against its PyTorch reference"),
    Backend("tflite", ("tensorflow", "tf_keras", "ai_edge_litert", "ai_edge_quantizer", "onnx2tf"),
            "TensorFlow SavedModel and TFLite variants (onnx2tf, ai-edge-quantizer, LiteRT)", ONNX2TF_INSTALL),
    Backend("openvino", ("openvino", "nncf"), "OpenVINO IR variants (NNCF int8)"),
    Backend("executorch", ("executorch", "torchao"), "ExecuTorch .pte variants (XNNPACK, PT2E int8)"),
    Backend("coreml", ("coremltools",), "Core ML packages (made here, run on macOS)"),
    Backend("serve", ("fastapi", "uvicorn", "httptools", "prometheus_client"), "edgeport serve (HTTP)"),
)}

# The extra that runs each runtime's files (and, with [export], makes them); a runtime not named
# here runs on the core (ONNX Runtime). The PyTorch reference runs on [export].
RUNTIME_BACKEND = {"savedmodel": "tflite", "tflite": "tflite", "executorch": "executorch",
                   "openvino": "openvino", "coreml": "coreml", "torch": "export"}


def missing_modules(backend: str) -> list[str]:
    """The modules of ``backend`` that cannot be imported here (empty: it is installed)."""
    return [m for m in BACKENDS[backend].modules if importlib.util.find_spec(m) is None]


def installed(backend: str) -> bool:
    """Whether every module of ``backend`` can be imported."""
    return not missing_modules(backend)


def backend_of(runtime: str) -> str | None:
    """The extra ``runtime`` needs (None: the core has it)."""
    return RUNTIME_BACKEND.get(runtime)


def missing_backend(runtime: str) -> str | None:
    """Why files of ``runtime`` cannot be run here, with the install command; None when they can."""
    backend = backend_of(runtime)
    return None if backend is None else missing_message(backend)


def missing_message(backend: str) -> str | None:
    """"needs the BACKEND backend (...): INSTALL COMMAND" when ``backend`` is not installed, else None."""
    if installed(backend):
        return None
    b = BACKENDS[backend]
    return (f"needs the {backend} backend ({b.purpose}), which is not installed here (missing: "
            f"{', '.join(missing_modules(backend))}): {b.install}")


def cannot_make(runtime: str) -> str | None:
    """Why variants of ``runtime`` cannot be made here (every one needs [export], and its runtime's
    backend to check and run it), with the install command; None when they can."""
    return missing_message("export") or missing_backend(runtime)


def report() -> list[dict[str, object]]:
    """Every backend, whether it is installed, what is missing and how to install it (`edgeport backends`)."""
    return [{"backend": b.name, "installed": installed(b.name), "missing": missing_modules(b.name),
             "purpose": b.purpose, "install": b.install} for b in BACKENDS.values()]
