"""edgeport: ship Hugging Face image classifiers to ONNX, SavedModel, TFLite, ExecuTorch and OpenVINO, validated."""
import logging as _logging

__version__ = "0.1.0"

# transformers imports torchao (an ExecuTorch dependency) whenever it is installed, and torchao
# then warns for each CUDA-only kernel library it cannot load on a CPU build of torch: noise in
# every step's log for kernels edgeport never uses (PT2E quantization is pure Python).
_logging.getLogger("torchao").setLevel(_logging.ERROR)
