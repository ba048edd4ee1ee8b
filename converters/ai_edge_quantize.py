"""Quantizing a float32 .tflite with ai-edge-quantizer (Google's post-training quantizer).

The fp16, dynamic-int8 and full-integer TFLite variants are all made from the tflite-fp32
artifact in seconds, instead of being re-converted from ONNX by TensorFlow's converter
(minutes and gigabytes per flavour on ViT-B/16). Each variant module says which recipe it
uses; this module runs it, checks the result is builtin-only and writes it atomically.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.converters.atomic import atomic_path
from edgeport.converters.checksums import sha256_file
from edgeport.converters.onnx2tf_tool import ConversionError
from edgeport.converters.tflite_ops import require_builtin_ops

# How calibrate_min_max merges the images' statistics; part of the calibration cache key, so a
# cache written by an older rule (the quantizer's moving average) is not read back.
CALIBRATION_METHOD = "min-max over all images"


def signature_input(path: str | Path) -> tuple[str, str]:
    """(signature key, input name) of a single-input .tflite, as the quantizer's calibration wants."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    if len(signatures) != 1:
        raise ConversionError(f"{path}: expected one signature, found {sorted(signatures)}")
    key, sig = next(iter(signatures.items()))
    if len(sig["inputs"]) != 1:
        raise ConversionError(f"{path}: expected one input, found {sig['inputs']}")
    return key, sig["inputs"][0]


def quantize_tflite(
    src: str | Path,
    dest: str | Path,
    recipe: list[dict[str, Any]],
    *,
    calibration_nhwc: np.ndarray | None = None,
    check: Callable[[Path], None] | None = None,
    calibration_cache: str | Path | None = None,
) -> dict[str, Any]:
    """Apply ai-edge-quantizer ``recipe`` to ``src`` and write the result to ``dest``.

    ``calibration_nhwc`` (preprocessed images, N x H x W x C float32) is required by static
    recipes. ``check(path)`` may raise ConversionError to refuse the written file before it
    is renamed into place. ``calibration_cache``: a folder where the calibration statistics
    are kept, so that a second static recipe on the same model and images (tflite-int8-io
    after tflite-int8) reuses them instead of calibrating again. Returns
    {"ops": [...], "quantizer": ...} for the manifest; raises ConversionError when the result
    holds a Flex or custom op.
    """
    # The quantizer warns that it keeps every tensor (it must, to calibrate and to check its
    # result); this step runs in its own process, so silence that here, and its progress bars too.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
    import ai_edge_quantizer

    _quiet_progress_bars()

    quantizer = ai_edge_quantizer.Quantizer(str(src), recipe)
    calibration = None
    if quantizer.need_calibration:
        if calibration_nhwc is None or len(calibration_nhwc) == 0:
            raise ConversionError("this recipe needs calibration images: set the model's 'calibration' folder")
        cache = None
        if calibration_cache is not None:
            cache = Path(calibration_cache) / f"calibration-{_calibration_key(src, calibration_nhwc)}.npz"
        calibration = _load_calibration(cache) if cache is not None else None
        if calibration is None:
            calibration = calibrate_min_max(src, calibration_nhwc)
            if cache is not None:
                _save_calibration(cache, calibration)
    result = quantizer.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    with atomic_path(dest) as tmp:
        Path(tmp).write_bytes(bytes(result.quantized_model))
        ops = require_builtin_ops(tmp)
        if check is not None:
            check(Path(tmp))
    return {"ops": ops, "quantizer": f"ai-edge-quantizer {_version()}"}


def calibrate_min_max(src: str | Path, calibration_nhwc: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Every tensor's smallest and largest value over all calibration images.

    ai-edge-quantizer's own ``Quantizer.calibrate`` keeps a moving average (weight 0.95) of
    each image's min and max instead, and the model takes one image at a time, so its ranges
    are those of a typical recent image: on the bundled emotion model, the logits were
    calibrated to [-2.9, 2.5] while they reach [-5.0, 5.5] on the same images, and every
    larger value was clipped. With the true min/max, its full-integer file's logit error
    fell from 0.33 to 0.09 (std) and its top-1 agreement with fp32 rose from 93.8% to 95.9%
    (FER2013 test, 3589 images). The quantizer's Calibrator takes the update rule as an
    argument; its ``min_max_update`` is the plain running min/max.

    The images run through the Calibrator's profiler-based mode, where TFLite's C++ side keeps
    each tensor's min and max during the run, instead of the default mode, which copies every
    tensor into Python and reduces it there op by op: on gender-vit's 128 images 0.44 s
    against 4.73 s, the same 306 tensors with the same values. The profiler does not know the
    recipe, so one image in the default mode says which tensors the quantizer wants and in
    which shape (``_profiled_as_default``); when the profiler's figures cannot stand in for
    the default mode's (a tensor missing, or a value beyond the +-3e38 the default mode leaves
    out, such as a -inf padding constant), every image runs in the default mode.
    """
    from ai_edge_quantizer import calibrator, recipe_manager

    key, name = signature_input(src)
    samples = [{name: image[None].astype(np.float32)} for image in calibration_nhwc]
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(_calibration_recipe())
    default = calibrator.CalibrationMode.CALIBRATION_PRESERVE_ALL_TENSORS
    model = Path(src).read_bytes()  # once for the two or three runs (ViT-B/16's is 330 MB)
    wanted = _run_calibrator(model, key, samples[:1], manager, default)
    profiled = _profiled_as_default(_run_calibrator(model, key, samples, manager,
                                                    calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED), wanted)
    return profiled if profiled is not None else _run_calibrator(model, key, samples, manager, default)


# The default calibration mode leaves values beyond these out of a tensor's min/max (the
# quantizer's min_max_calibrate ``valid_range``: -inf padding constants); the profiler does not.
_VALID_RANGE = 3e38


def _run_calibrator(model: bytes, signature: str, samples: list[dict[str, np.ndarray]], manager,
                    mode) -> dict[str, dict]:
    """The quantizer's Calibrator in ``mode`` on the .tflite ``model`` over ``samples`` of its
    signature ``signature``: the statistics it keeps."""
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils

    with warnings.catch_warnings():  # calibration must keep every tensor; the quantizer warns that it does
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        calibrating = calibrator.Calibrator(model, num_threads=os.cpu_count() or 1, mode=mode,
                                            qsv_update_func=qsv_utils.min_max_update)
        calibrating.calibrate({signature: samples}, manager)
    return calibrating.get_model_qsvs()


def _profiled_as_default(profiled: dict[str, dict], wanted: dict[str, dict]) -> dict[str, dict] | None:
    """The profiler's min/max of the tensors in ``wanted`` (a default-mode calibration), in the
    default mode's shapes (ones of the tensor's rank; the profiler gives shape (1,)); None when
    a wanted tensor is missing, not per-tensor, or has a value the default mode would leave out."""
    out = {}
    for name, reference in wanted.items():
        stats = profiled.get(name)
        # one image's statistics also count its values (num_samples), which min_max_update drops
        # when it merges the next image's: min and max are what a calibration over images keeps
        if stats is None or not {"min", "max"} <= set(reference) <= {"min", "max", "num_samples"}:
            return None
        low, high = np.asarray(stats["min"]), np.asarray(stats["max"])
        if low.size != 1 or high.size != 1 or not np.all(np.isfinite([low, high])) \
                or abs(float(low.item())) >= _VALID_RANGE or abs(float(high.item())) >= _VALID_RANGE:
            return None
        out[name] = {"min": np.reshape(low, np.shape(reference["min"])).astype(np.asarray(reference["min"]).dtype),
                     "max": np.reshape(high, np.shape(reference["max"])).astype(np.asarray(reference["max"]).dtype)}
    return out


def _quiet_progress_bars() -> None:
    """Turn off ai-edge-quantizer's progress bars (calibration, parameters, transformations).

    It creates them with an explicit ``disable=False``, which TQDM_DISABLE cannot override,
    and in the step's log (not a terminal) each is thousands of carriage-return characters.
    The step already reports progress: edgeport's stage runner prints a heartbeat with the
    elapsed time and peak memory every minute. The quantizer is pinned (requirements.lock), so
    this reaches into a known version; if its internals move, the bars just come back.
    """
    try:
        from ai_edge_quantizer.utils import progress_utils
    except ImportError:
        return
    bar = getattr(progress_utils, "ProgressBar", None)
    if bar is None or getattr(bar, "_edgeport_quiet", False):
        return
    init = bar.__init__

    def quiet_init(self, *args, **kwargs):
        kwargs["enable"] = False
        init(self, *args, **kwargs)

    bar.__init__ = quiet_init
    bar._edgeport_quiet = True


def _calibration_recipe() -> list[dict[str, Any]]:
    """Min/max statistics for every tensor of every op the quantizer supports.

    Every calibration runs this recipe rather than the variant's own: min/max statistics do
    not depend on the bit width or on which ops a recipe then quantizes, so one calibration
    serves every static recipe built on min/max (tflite-int8 and tflite-int8-io, with int8
    or int16 activations), and a cached one gives the same bytes as a fresh one.
    """
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                              activation_num_bits=8, weight_num_bits=8)
    return manager.get_quantization_recipe()


def _calibration_key(src: str | Path, images: np.ndarray) -> str:
    """What the calibration statistics depend on: the float model, the images and the quantizer."""
    h = hashlib.sha256()
    h.update(sha256_file(src).encode())  # streamed: a ViT-B/16 fp32 file is 330 MB
    h.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    h.update(_version().encode())
    h.update(CALIBRATION_METHOD.encode())
    return h.hexdigest()[:24]


def _save_calibration(path: Path, calibration: dict[str, dict[str, np.ndarray]]) -> None:
    # npz, not pickle: a cache file must not be able to run code when it is read back.
    # Entries are numbered ("3/min"): tensor names hold characters a zip entry name cannot.
    names = list(calibration)
    arrays = {f"{i}/{stat}": np.asarray(value) for i, tensor in enumerate(names)
              for stat, value in calibration[tensor].items()}
    arrays["names"] = np.array(names, dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _load_calibration(path: Path) -> dict[str, dict[str, np.ndarray]] | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data["names"]]
        calibration: dict[str, dict[str, np.ndarray]] = {name: {} for name in names}
        for key in data.files:
            if key != "names":
                index, _, stat = key.partition("/")
                calibration[names[int(index)]][stat] = data[key]
    return calibration


def _version() -> str:
    from importlib.metadata import version

    return version("ai-edge-quantizer")
