"""Converters: each turns one artifact into another, written atomically.

- onnx_export:          Hugging Face model -> ONNX fp32 (optimum, opset 20)
- onnx_fp16:            ONNX fp32 -> ONNX fp16 (onnxruntime float16 converter)
- onnx_int8_dynamic:    ONNX fp32 -> dynamic int8 (onnxruntime quantize_dynamic)
- onnx_int8_static:     ONNX fp32 -> static int8 QDQ, calibrated (onnxruntime quantize_static)
- savedmodel:           ONNX -> SavedModel (onnx2tf TensorFlow backend, stopped after the SavedModel)
- tflite_fp32:          ONNX -> TFLite fp32 (onnx2tf flatbuffer_direct; Linear layers as FULLY_CONNECTED)
- tflite_graph:         the BATCH_MATMUL -> FULLY_CONNECTED rewrite of a .tflite
- ai_edge_quantize:     running an ai-edge-quantizer recipe on the tflite-fp32 file
- tflite_fp16, tflite_int8_dynamic, tflite_int8: the recipes for those TFLite variants
- tflite_ops:           operators of a .tflite; the builtin-only rule
- executorch_export:    Hugging Face model -> ExecuTorch .pte (XNNPACK delegate; int8 by PT2E)
- openvino_ir:          ONNX fp32 -> OpenVINO IR (fp32; int8 by NNCF)
- torch_logits:         a Hugging Face classifier as a logits-out module for torch.export
- quiet:                converter libraries' warnings and prints kept out of the logs
- onnx2tf_tool:         running onnx2tf offline, in its own process
- atomic:               temporary names renamed on success
- checksums:            sha256 of a file, streamed
- child_process:        a tool in a child process: wall time, peak memory, heartbeat, no orphans
"""
