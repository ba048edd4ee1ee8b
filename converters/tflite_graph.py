"""Small rewrites of a .tflite flatbuffer that no converter or quantizer does for us.

onnx2tf's flatbuffer_direct backend lowers every ONNX MatMul to BATCH_MATMUL, even when
the right-hand side is a constant weight (a Linear layer). The rest of the toolchain
expects such layers as FULLY_CONNECTED: ai-edge-quantizer casts weights to fp16 only for
FULLY_CONNECTED/CONV, and its per-channel int8 weights on BATCH_MATMUL gave garbage
(27% top-1 agreement on emotion-vit). ``batch_matmul_to_fully_connected`` turns each
BATCH_MATMUL with a constant 2-D weight into the equivalent FULLY_CONNECTED
(``keep_num_dims``), which is exactly what TensorFlow's own converter emits for a Linear.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.tflite_ops import builtin_code
from converters.tflite_ops import tflite_schema as _schema


def _load(data: bytes):
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def _save(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode_index(model, builtin: int) -> int:
    """Index of ``builtin`` in the model's operator codes, adding it when missing."""
    s = _schema()
    for i in range(len(model.operatorCodes)):
        if _code_builtin(model.operatorCodes[i]) == builtin:
            return i
    code = s.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _code_builtin(code) -> int:
    return builtin_code(code.builtinCode, code.deprecatedBuiltinCode)


def _builtin(model, op) -> int:
    return _code_builtin(model.operatorCodes[op.opcodeIndex])


def _constant(model, tensor) -> np.ndarray | None:
    """The float32 constant held by ``tensor``, or None when it is computed at run time."""
    s = _schema()
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    if buf is None or buf.data is None or len(buf.data) == 0 or tensor.type != s.TensorType.FLOAT32:
        return None
    return np.frombuffer(bytes(np.asarray(buf.data, dtype=np.uint8)), dtype=np.float32).reshape(tensor.shape)


def _add_buffer(model, array: np.ndarray) -> int:
    buf = _schema().BufferT()
    buf.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8)
    model.buffers.append(buf)
    return len(model.buffers) - 1


def batch_matmul_to_fully_connected(data: bytes) -> tuple[bytes, int]:
    """Rewrite BATCH_MATMUL(x, constant 2-D W) as FULLY_CONNECTED(x, W^T); returns (model, count)."""
    s = _schema()
    model = _load(data)
    fc_index = _opcode_index(model, s.BuiltinOperator.FULLY_CONNECTED)
    rewritten = 0
    for graph in model.subgraphs:
        uses: dict[int, int] = {}
        for op in graph.operators:
            for i in op.inputs:
                uses[i] = uses.get(i, 0) + 1
        for op in graph.operators:
            if _builtin(model, op) != s.BuiltinOperator.BATCH_MATMUL or len(op.inputs) != 2:
                continue
            opts = op.builtinOptions
            if opts is not None and getattr(opts, "adjX", False):
                continue
            weight_tensor = graph.tensors[op.inputs[1]]
            weight = _constant(model, weight_tensor)
            if weight is None or weight.ndim != 2:
                continue
            # BATCH_MATMUL computes x @ W (W: in x out, or out x in with adj_y);
            # FULLY_CONNECTED wants out x in.
            adj_y = bool(opts is not None and getattr(opts, "adjY", False))
            fc_weight = np.ascontiguousarray(weight if adj_y else weight.T, dtype=np.float32)
            if uses[op.inputs[1]] == 1:  # rewrite in place: no dead tensor left behind
                weight_tensor.shape = list(fc_weight.shape)
                model.buffers[weight_tensor.buffer].data = np.frombuffer(fc_weight.tobytes(), dtype=np.uint8)
                weight_index = op.inputs[1]
            else:
                tensor = s.TensorT()
                tensor.shape = list(fc_weight.shape)
                tensor.type = s.TensorType.FLOAT32
                tensor.name = (weight_tensor.name or b"weight") + b"_fc"
                tensor.buffer = _add_buffer(model, fc_weight)
                graph.tensors.append(tensor)
                weight_index = len(graph.tensors) - 1
            options = s.FullyConnectedOptionsT()
            options.keepNumDims = True
            op.opcodeIndex = fc_index
            op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
            op.builtinOptions = options
            op.inputs = [op.inputs[0], weight_index, -1]
            rewritten += 1
    if not rewritten:
        return data, 0
    return _save(model), rewritten


# Ops whose output is >= 0 when their fused activation is RELU / RELU6 (or that are RELUs).
_RELU_ACTIVATIONS = ("RELU", "RELU6", "RELU_N1_TO_1")


def _nonnegative(model, graph, tensor_index: int, producers: dict[int, Any]) -> bool:
    """Whether ``tensor_index`` is provably >= 0: the output of a RELU, RELU6 or a RELU-fused op."""
    s = _schema()
    op = producers.get(tensor_index)
    if op is None:
        return False
    code = _builtin(model, op)
    if code in (s.BuiltinOperator.RELU, s.BuiltinOperator.RELU6):
        return True
    fused = getattr(op.builtinOptions, "fusedActivationFunction", None) if op.builtinOptions is not None else None
    return fused in (s.ActivationFunctionType.RELU, s.ActivationFunctionType.RELU6)


def max_pool_padding_to_zeros(data: bytes) -> tuple[bytes, int]:
    """PADV2(x, pads, -FLT_MAX) -> PAD(x, pads) when x >= 0 and only MAX_POOL_2D reads it.

    onnx2tf pads a MaxPool's borders with the lowest float (ResNet's stem). ai-edge-quantizer
    cannot quantize that constant (it fails the tflite-int8 variants). When the input is a
    ReLU's output, every window holds a value >= 0, so padding with 0 gives the same maxima:
    the rewrite is exact there, and is not applied anywhere else.
    """
    s = _schema()
    model = _load(data)
    pad_index = None
    rewritten = 0
    for graph in model.subgraphs:
        producers = {out: op for op in graph.operators for out in op.outputs}
        readers: dict[int, list] = {}
        for op in graph.operators:
            for i in op.inputs:
                readers.setdefault(i, []).append(op)
        for op in graph.operators:
            if _builtin(model, op) != s.BuiltinOperator.PADV2 or len(op.inputs) != 3:
                continue
            value = _constant(model, graph.tensors[op.inputs[2]])
            if value is None or value.size != 1 or float(value.reshape(-1)[0]) > 0.0:
                continue
            consumers = readers.get(op.outputs[0], [])
            if not consumers or any(_builtin(model, c) != s.BuiltinOperator.MAX_POOL_2D for c in consumers):
                continue
            if not _nonnegative(model, graph, op.inputs[0], producers):
                continue
            if pad_index is None:
                pad_index = _opcode_index(model, s.BuiltinOperator.PAD)
            op.opcodeIndex = pad_index
            op.inputs = [op.inputs[0], op.inputs[1]]
            op.builtinOptionsType = s.BuiltinOptions.PadOptions
            op.builtinOptions = s.PadOptionsT()
            rewritten += 1
    if not rewritten:
        return data, 0
    return _save(model), rewritten
