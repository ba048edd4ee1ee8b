"""Converters: each turns one artifact into another, written atomically.

- onnx_export:   Hugging Face model -> ONNX fp32 (optimum)
- savedmodel:    ONNX -> TF SavedModel fp32 (onnx2tf, TF converter backend)
- tflite_fp32:   ONNX -> TFLite fp32 (onnx2tf, flatbuffer_direct backend)
- onnx2tf_tool:  running onnx2tf offline, in its own process
- atomic:        temporary names renamed on success
"""
