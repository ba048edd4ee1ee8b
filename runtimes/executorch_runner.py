"""ExecuTorch, on the host: the ``executorch.runtime`` Python API over the same C++ runtime
(and XNNPACK kernels) that ships in the Android/iOS libraries."""
from __future__ import annotations

import numpy as np

from edgeport.runtimes.base import Runner, RunnerError


class ExecuTorchRunner(Runner):
    """Runs a ``.pte`` program's ``forward`` (one NCHW float32 input, logits out), batch 1."""

    runtime = "executorch"

    def _load(self) -> None:
        try:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise RunnerError(f"executorch: the executorch package is not installed ({exc}); "
                              "run `make venv` to install the lock file") from exc
        # XNNPACK's thread pool is process-wide and defaults to every core; the harness gives
        # each runtime the same thread count.
        _unsafe_reset_threadpool(self.threads)
        try:
            self._program = Runtime.get().load_program(self.path)
            self._method = self._program.load_method("forward")
        except Exception as exc:  # the runtime raises RuntimeError/ValueError with its own codes
            raise RunnerError(f"executorch: cannot load {self.path}: {exc}") from exc
        meta = self._method.metadata
        shape = tuple(meta.input_tensor_meta(0).sizes())
        self._fixed = int(shape[0]) if shape else None

    def _unload(self) -> None:
        self._method = None
        self._program = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        out = self._method.execute([torch.from_numpy(batch)])[0]
        return out.detach().numpy()
