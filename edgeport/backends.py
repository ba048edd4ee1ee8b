"""Which optional backends are installed, what each variant needs, and the command that adds it.

edgeport installs as a small core (runs ONNX files, reports, the gate, ``edgeport.load``) plus
pip extras: ``[export]`` (torch, transformers, optimum: making variants from a Hugging Face
model and validating them against its PyTorch reference), one per converter backend
(``[tflite]``, ``[openvino]``, ``[executorch]``, ``[coreml]``, each with ``[export]``) and
``[serve]`` (ONNX and TFLite; ``[serve-openvino]`` adds OpenVINO). This is the one place that maps
a runtime to the extra that makes its files and to the modules that run them, and an extra to the
modules it brings, so that a missing backend is a sentence with the
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
    Backend("serve", ("fastapi", "uvicorn", "httptools", "prometheus_client"),
            "edgeport serve (HTTP), with the LiteRT interpreter for TFLite variants; no torch or TensorFlow"),
    Backend("serve-openvino", ("openvino",), "serving OpenVINO IR variants too (the OpenVINO runtime "
            "alone, without NNCF or torch); with [serve]"),
)}

# The extra that makes each runtime's variants (with [export]) and validates them; a runtime not
# named here is made by [export] alone (ONNX). The PyTorch reference runs on [export].
RUNTIME_BACKEND = {"savedmodel": "tflite", "tflite": "tflite", "executorch": "executorch",
                   "openvino": "openvino", "coreml": "coreml", "torch": "export"}


@dataclass(frozen=True)
class RuntimeNeeds:
    """What running a runtime's files imports, and the smallest extra that brings it."""

    modules: tuple[str, ...]
    extra: str


# Running a file needs much less than making it: LiteRT's interpreter runs .tflite files without
# TensorFlow, and the OpenVINO runtime runs IR without NNCF or torch; so `edgeport[serve]` (and
# `edgeport.load`) can run them from a small install. ONNX files run on the core.
RUNTIME_NEEDS: dict[str, RuntimeNeeds] = {
    "torch": RuntimeNeeds(("torch", "transformers"), "export"),
    "tflite": RuntimeNeeds(("ai_edge_litert",), "serve"),
    "openvino": RuntimeNeeds(("openvino",), "serve-openvino"),
    "savedmodel": RuntimeNeeds(("tensorflow",), "tflite"),
    "executorch": RuntimeNeeds(("executorch",), "executorch"),
    "coreml": RuntimeNeeds(("coremltools",), "coreml"),
}


def missing_modules(backend: str) -> list[str]:
    """The modules of ``backend`` that cannot be imported here (empty: it is installed)."""
    return absent(BACKENDS[backend].modules)


def absent(modules: tuple[str, ...]) -> list[str]:
    """Those of ``modules`` that cannot be imported here."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def installed(backend: str) -> bool:
    """Whether every module of ``backend`` can be imported."""
    return not missing_modules(backend)


def backend_of(runtime: str) -> str | None:
    """The extra that makes ``runtime``'s variants (None: [export] alone)."""
    return RUNTIME_BACKEND.get(runtime)


def missing_backend(runtime: str) -> str | None:
    """Why files of ``runtime`` cannot be run here, with the install command; None when they can."""
    needs = RUNTIME_NEEDS.get(runtime)
    if needs is None:
        return None
    missing = absent(needs.modules)
    if not missing:
        return None
    command = BACKENDS[needs.extra].install
    maker = RUNTIME_BACKEND.get(runtime)
    also = (f" (or {BACKENDS[maker].install} to make and validate its variants too)"
            if maker and maker != needs.extra else "")
    return f"needs {', '.join(missing)} to run its files, which is not installed here: {command}{also}"


def missing_message(backend: str) -> str | None:
    """"needs the BACKEND backend (...): INSTALL COMMAND" when ``backend`` is not installed, else None."""
    if installed(backend):
        return None
    b = BACKENDS[backend]
    return (f"needs the {backend} backend ({b.purpose}), which is not installed here (missing: "
            f"{', '.join(missing_modules(backend))}): {b.install}")


def cannot_make(runtime: str) -> str | None:
    """Why variants of ``runtime`` cannot be made here (every one needs [export], and the extra that
    converts to its format and runs its files), with the install command; None when they can."""
    maker = backend_of(runtime)
    return missing_message("export") or (missing_message(maker) if maker else None)


def runnable() -> list[str]:
    """The runtimes whose files this installation, on this machine, can run (served, or loaded by
    ``edgeport.load``): Core ML's, say, only on macOS."""
    from edgeport.runtimes import unavailable_reason

    return [r for r in ("onnxruntime", *RUNTIME_NEEDS) if r != "torch" and missing_backend(r) is None
            and unavailable_reason(r) is None]


def report() -> list[dict[str, object]]:
    """Every backend, whether it is installed, what is missing and how to install it (`edgeport backends`)."""
    return [{"backend": b.name, "installed": installed(b.name), "missing": missing_modules(b.name),
             "purpose": b.purpose, "install": b.install} for b in BACKENDS.values()]
