"""Converters: each turns one artifact into another, written atomically.

- onnx_export:          Hugging Face model -> ONNX fp32 (optimum, opset 20)
- onnx_fp16:            ONNX fp32 -> ONNX fp16 (onnxruntime float16 converter)
- onnx_int8_dynamic:    ONNX fp32 -> dynamic int8 (onnxruntime quantize_dynamic)
- onnx_int8_static:     ONNX fp32 -> static int8 QDQ, calibrated (onnxruntime quantize_static)
- tensorflow_run:       one onnx2tf TensorFlow-backend run: SavedModel + fp16/int8 TFLite files
- savedmodel:           the SavedModel of that run
- tflite_fp32:          ONNX -> TFLite fp32 (onnx2tf flatbuffer_direct)
- tflite_fp16, tflite_int8_dynamic, tflite_int8: TFLite files of that run, builtin-ops checked
- tflite_ops:           operators of a .tflite; the builtin-only rule
- onnx2tf_tool:         running onnx2tf offline, in its own process
- atomic:               temporary names renamed on success
- child_process:        a tool in a child process: wall time, peak memory, heartbeat, no orphans
"""
