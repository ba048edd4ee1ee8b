"""TensorFlow SavedModel, through its ``serving_default`` signature."""
from __future__ import annotations

import numpy as np

from edgeport.runtimes.base import Runner, RunnerError
from edgeport.runtimes.lean_start import UNUSED_BY_KERAS


class SavedModelRunner(Runner):
    """Runs a SavedModel directory written by onnx2tf (NHWC input)."""

    runtime = "savedmodel"
    unused_packages = UNUSED_BY_KERAS

    def _load(self) -> None:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(self.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already started in this process; its thread pools are fixed now
        try:
            loaded = tf.saved_model.load(str(self.path))
        except Exception as exc:
            raise RunnerError(f"savedmodel: cannot load {self.path}: {exc}") from exc
        if "serving_default" not in loaded.signatures:
            raise RunnerError(f"savedmodel: {self.path} has no 'serving_default' signature")
        self._loaded = loaded  # keeps the variables alive
        self._fn = loaded.signatures["serving_default"]
        (name, spec), = self._fn.structured_input_signature[1].items()
        self._input_name = name
        self._dtype = spec.dtype
        self._fixed = spec.shape[0] if spec.shape.rank and spec.shape[0] is not None else None

    def _unload(self) -> None:
        self._fn = None
        self._loaded = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        nhwc = tf.constant(batch.transpose(0, 2, 3, 1), dtype=self._dtype)
        outputs = self._fn(**{self._input_name: nhwc})
        if len(outputs) != 1:
            raise RunnerError(f"savedmodel: expected one output, got {sorted(outputs)}")
        return next(iter(outputs.values())).numpy()
