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

from edgeport.converters.tflite_ops import builtin_code
from edgeport.converters.tflite_ops import tflite_schema as _schema


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
    # the first version TFLite registers (BROADCAST_TO starts at 2)
    code.version = 2 if builtin == s.BuiltinOperator.BROADCAST_TO else 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _code_builtin(code) -> int:
    return builtin_code(code.builtinCode, code.deprecatedBuiltinCode)


def _builtin(model, op) -> int:
    return _code_builtin(model.operatorCodes[op.opcodeIndex])


def _constant(model, tensor) -> np.ndarray | None:
    """The constant held by a float32, int32 or int64 ``tensor`` (shaped as the tensor), or None
    when it is computed at run time or of another type."""
    s = _schema()
    dtype = {s.TensorType.FLOAT32: np.float32, s.TensorType.INT32: np.int32,
             s.TensorType.INT64: np.int64}.get(tensor.type)
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    if dtype is None or buf is None or buf.data is None or len(buf.data) == 0:
        return None
    return np.frombuffer(bytes(np.asarray(buf.data, dtype=np.uint8)), dtype=dtype).reshape(tensor.shape)


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


def fully_connected_bias(data: bytes) -> tuple[bytes, int]:
    """FULLY_CONNECTED(x, W) read only by ADD(it, constant b) -> FULLY_CONNECTED(x, W, b); returns
    (model, count).

    ONNX writes a Linear layer on a 3-D input as MatMul + Add, and onnx2tf keeps the Add: every
    Linear layer of a ViT came out as a FULLY_CONNECTED without bias and an ADD of the bias after
    it, a second pass over the layer's output. TFLite's FULLY_CONNECTED takes the bias itself
    (XNNPACK adds it as the GEMM writes its output; the quantizers make it int32/int64 beside the
    weights); TensorFlow's own converter writes Linear layers that way. The same sum, in another
    rounding order. Only where b is float32, one value per output feature (shape [N] or
    [1, ..., 1, N]), the FULLY_CONNECTED has no bias yet and its output no other reader, and the
    ADD has no fused activation, or a ReLU one while the FULLY_CONNECTED has none (it moves there).
    """
    s = _schema()
    model = _load(data)
    rewritten = 0
    for graph in model.subgraphs:
        producers, readers = _links(graph)
        graph_outputs = {int(i) for i in graph.outputs}
        dead = []
        for add in graph.operators:
            if _builtin(model, add) != s.BuiltinOperator.ADD or len(add.inputs) != 2:
                continue
            for k in (0, 1):
                fc, bias_index = producers.get(add.inputs[k]), add.inputs[1 - k]
                if fc is not None and _builtin(model, fc) == s.BuiltinOperator.FULLY_CONNECTED:
                    break
            else:
                continue
            if len(fc.inputs) > 2 and fc.inputs[2] >= 0 or readers.get(fc.outputs[0]) != [add] \
                    or fc.outputs[0] in graph_outputs:
                continue
            bias_tensor, out = graph.tensors[bias_index], graph.tensors[fc.outputs[0]]
            bias = _constant(model, bias_tensor) if bias_tensor.type == s.TensorType.FLOAT32 else None
            weight = graph.tensors[fc.inputs[1]]
            features = int(weight.shape[0]) if weight.shape is not None and len(weight.shape) == 2 else -1
            if bias is None or bias.size != features or any(int(d) != 1 for d in bias.shape[:-1]) \
                    or list(graph.tensors[add.outputs[0]].shape) != list(out.shape):
                continue
            fc_act = getattr(fc.builtinOptions, "fusedActivationFunction", 0) if fc.builtinOptions else 0
            add_act = getattr(add.builtinOptions, "fusedActivationFunction", 0) if add.builtinOptions else 0
            if add_act and (fc_act or add_act not in (s.ActivationFunctionType.RELU, s.ActivationFunctionType.RELU6,
                                                      s.ActivationFunctionType.RELU_N1_TO_1)):
                continue
            if bias.ndim != 1 or len(readers.get(bias_index, [])) != 1:
                # FULLY_CONNECTED wants [N], and a tensor of its own (the exporter shares equal
                # constants between layers); named after the layer, as the quantizer wants names unique
                bias_index = _add_tensor(model, graph, f"{_name(graph.tensors[add.outputs[0]])}/edgeport_bias",
                                         [features], s.TensorType.FLOAT32, bias.reshape(-1).astype(np.float32))
            if fc.builtinOptions is None:
                fc.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
                fc.builtinOptions = s.FullyConnectedOptionsT()
            if add_act:
                fc.builtinOptions.fusedActivationFunction = add_act
            fc.inputs = [fc.inputs[0], fc.inputs[1], bias_index]
            fc.outputs = list(add.outputs)
            dead.append(add)
            rewritten += 1
        if dead:
            _remove_ops(model, graph, dead)
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
        producers, readers = _links(graph)
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


def hard_swish_from_parts(data: bytes) -> tuple[bytes, int]:
    """x * RELU_0_TO_1(x * 1/6 + 0.5) -> HARD_SWISH(x), the op it spells out; returns (model, count).

    onnx2tf lowers ONNX HardSwish (LeViT, MobileNetV3) to those four ops. ai-edge-quantizer has
    no integer RELU_0_TO_1, so the full-integer files kept it in float and failed; it quantizes
    TFLite's HARD_SWISH builtin, which XNNPACK also runs. The ops are fused only when their
    intermediate results have no other reader.
    """
    s = _schema()
    model = _load(data)
    rewritten = 0
    hard_swish = None
    for graph in model.subgraphs:
        producers, readers = _links(graph)

        def only_reader(tensor: int, op) -> bool:
            return readers.get(tensor, []) == [op]

        def split_constant(op, value: float):
            """(the non-constant input, True) when ``op`` has a scalar constant ``value`` input."""
            for k, j in ((0, 1), (1, 0)):
                c = _constant(model, graph.tensors[op.inputs[k]])
                if c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - value) < 1e-6:
                    return op.inputs[j]
            return None

        dead = []
        for relu in graph.operators:
            if _builtin(model, relu) != s.BuiltinOperator.RELU_0_TO_1:
                continue
            add = producers.get(relu.inputs[0])
            if add is None or _builtin(model, add) != s.BuiltinOperator.ADD or not only_reader(add.outputs[0], relu):
                continue
            scaled = split_constant(add, 0.5)
            mul = producers.get(scaled) if scaled is not None else None
            if mul is None or _builtin(model, mul) != s.BuiltinOperator.MUL or not only_reader(mul.outputs[0], add):
                continue
            x = split_constant(mul, 1.0 / 6.0)
            outs = readers.get(relu.outputs[0], [])
            if x is None or len(outs) != 1 or _builtin(model, outs[0]) != s.BuiltinOperator.MUL:
                continue
            final = outs[0]
            if sorted(final.inputs) != sorted([x, relu.outputs[0]]):
                continue
            if any(getattr(o.builtinOptions, "fusedActivationFunction", 0) for o in (mul, add, final)):
                continue
            if hard_swish is None:
                hard_swish = _opcode_index(model, s.BuiltinOperator.HARD_SWISH)
            final.opcodeIndex = hard_swish
            final.inputs = [x]
            final.builtinOptionsType = s.BuiltinOptions.NONE
            final.builtinOptions = None
            dead += [mul, add, relu]
            rewritten += 1
        if dead:
            _remove_ops(model, graph, dead)
    if not rewritten:
        return data, 0
    return _save(model), rewritten


def _links(graph) -> tuple[dict[int, Any], dict[int, list]]:
    """Each tensor's producing operator, and the operators reading it, in ``graph``."""
    producers = {out: op for op in graph.operators for out in op.outputs}
    readers: dict[int, list] = {}
    for op in graph.operators:
        for i in op.inputs:
            readers.setdefault(i, []).append(op)
    return producers, readers


def _remove_ops(model, graph, dead: list) -> None:
    """Take the ``dead`` operators out of ``graph``, then the tensors nothing refers to any more."""
    graph.operators = [op for op in graph.operators if not any(op is d for d in dead)]
    _drop_unused_tensors(model, model.subgraphs.index(graph))


def _drop_unused_tensors(model, subgraph: int) -> None:
    """Remove tensors no operator or graph I/O refers to, renumbering the rest.

    Tools that walk every tensor (ai-edge-quantizer's calibrator reads them all) fail on an
    intermediate tensor whose producer was fused away. Signature tensor indices follow.
    """
    graph = model.subgraphs[subgraph]
    used = {i for op in graph.operators for i in (*op.inputs, *op.outputs) if i >= 0}
    used |= {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
    order = sorted(used)
    new_index = {old: new for new, old in enumerate(order)}
    graph.tensors = [graph.tensors[i] for i in order]
    for op in graph.operators:
        op.inputs = [new_index[i] if i >= 0 else i for i in op.inputs]
        op.outputs = [new_index[i] for i in op.outputs]
    graph.inputs = [new_index[int(i)] for i in graph.inputs]
    graph.outputs = [new_index[int(i)] for i in graph.outputs]
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == subgraph:
            for tensor_map in (*(signature.inputs or []), *(signature.outputs or [])):
                tensor_map.tensorIndex = new_index[tensor_map.tensorIndex]


def reciprocal_sqrt(data: bytes) -> tuple[bytes, int]:
    """DIV(1, SQRT(x)) -> RSQRT(x), the op normalizations spell out; returns (model, count).

    onnx2tf lowers LayerNorm / InstanceNorm's 1/std as a DIV of the constant 1 by a SQRT. In
    an integer file, a channel whose variance rounds to zero makes that SQRT zero, and TFLite's
    integer DIV aborts the process ("data[i] != zero_point": MobileViTV2's GroupNorm on real
    images). RSQRT is the same value in float, and its integer kernel saturates instead.

    An L2 normalization (``F.normalize``: SwiftFormer's attention) divides a tensor, not 1, by
    its norm, often through a clamp and a broadcast: DIV(x, MUL(MAXIMUM(SQRT(s), eps), ones)).
    That becomes MUL(x, MUL(MINIMUM(RSQRT(s), 1/eps), ones)): each op between the SQRT and the
    DIV is replaced by its reciprocal form (see ``_reciprocal_chain``).
    """
    s = _schema()
    model = _load(data)
    rewritten = 0
    rsqrt = None
    for graph in model.subgraphs:
        producers, readers = _links(graph)
        dead = []
        for div in graph.operators:
            if _builtin(model, div) != s.BuiltinOperator.DIV or len(div.inputs) != 2:
                continue
            if getattr(div.builtinOptions, "fusedActivationFunction", 0):
                continue
            one = _constant(model, graph.tensors[div.inputs[0]])
            sqrt = producers.get(div.inputs[1])
            if one is None or not np.all(one == 1.0) or one.size != 1:
                chain = _reciprocal_chain(model, graph, div.inputs[1], producers, readers, div)
                if chain is None:
                    continue
                _invert_chain(model, graph, chain)
                div.opcodeIndex = _opcode_index(model, s.BuiltinOperator.MUL)
                div.builtinOptionsType = s.BuiltinOptions.MulOptions
                div.builtinOptions = s.MulOptionsT()
                rewritten += 1
                continue
            if sqrt is None or _builtin(model, sqrt) != s.BuiltinOperator.SQRT or readers.get(div.inputs[1]) != [div]:
                continue
            if rsqrt is None:
                rsqrt = _opcode_index(model, s.BuiltinOperator.RSQRT)
            div.opcodeIndex = rsqrt
            div.inputs = [sqrt.inputs[0]]
            div.builtinOptionsType = s.BuiltinOptions.NONE
            div.builtinOptions = None
            dead.append(sqrt)
            rewritten += 1
        if dead:
            _remove_ops(model, graph, dead)
    if not rewritten:
        return data, 0
    return _save(model), rewritten


def _reciprocal_chain(model, graph, tensor: int, producers: dict[int, Any], readers: dict[int, list],
                      reader) -> list | None:
    """The ops from a SQRT to ``reader`` along ``tensor`` when 1/``tensor`` can be computed by
    turning the SQRT into RSQRT and each op after it into its reciprocal form, else None.

    Allowed between them: RELU (the identity on a square root, and on its reciprocal), MAXIMUM
    with a positive constant c (1/max(a, c) = min(1/a, 1/c)), MUL by a nonzero constant k
    (1/(a k) = (1/a)(1/k)) and RESHAPE. Every tensor on the way must be read by the next op only,
    so that no other reader sees the reciprocal.
    """
    s = _schema()
    chain = []
    for _ in range(8):
        if readers.get(tensor) != [reader]:
            return None
        op = producers.get(tensor)
        if op is None or getattr(op.builtinOptions, "fusedActivationFunction", 0):
            return None
        kind = _builtin(model, op)
        chain.append(op)
        if kind == s.BuiltinOperator.SQRT:
            return chain
        if kind in (s.BuiltinOperator.RELU, s.BuiltinOperator.RESHAPE):
            tensor = op.inputs[0]
        elif kind in (s.BuiltinOperator.MAXIMUM, s.BuiltinOperator.MUL) and len(op.inputs) == 2:
            constants = [_constant(model, graph.tensors[i]) for i in op.inputs]
            if sum(c is not None for c in constants) != 1:
                return None
            c = constants[0] if constants[0] is not None else constants[1]
            if graph.tensors[op.inputs[0 if constants[0] is not None else 1]].type != s.TensorType.FLOAT32 \
                    or not np.all(np.isfinite(c)) or np.any(c <= 0 if kind == s.BuiltinOperator.MAXIMUM else c == 0):
                return None
            tensor = op.inputs[1] if constants[0] is not None else op.inputs[0]
        else:
            return None
        reader = op
    return None


def _invert_chain(model, graph, chain: list) -> None:
    """Rewrite the ops ``_reciprocal_chain`` returned so that they compute the reciprocal."""
    s = _schema()
    for op in chain:
        kind = _builtin(model, op)
        if kind == s.BuiltinOperator.SQRT:
            op.opcodeIndex = _opcode_index(model, s.BuiltinOperator.RSQRT)
        elif kind in (s.BuiltinOperator.MAXIMUM, s.BuiltinOperator.MUL):
            index = next(i for i in op.inputs if _constant(model, graph.tensors[i]) is not None)
            c = graph.tensors[index]
            # a new tensor, as the constant may be shared with ops outside the chain
            inverse = _add_tensor(model, graph, f"{_name(c)}/edgeport_reciprocal", list(c.shape), c.type,
                                  (1.0 / _constant(model, c)).astype(np.float32))
            op.inputs = [inverse if i == index else i for i in op.inputs]
            if kind == s.BuiltinOperator.MAXIMUM:
                op.opcodeIndex = _opcode_index(model, s.BuiltinOperator.MINIMUM)


def integer_forms(data: bytes) -> tuple[bytes, dict[str, int]]:
    """Ops that ai-edge-quantizer 0.10 cannot make integer, spelled with ops it can; exact in
    float. Returns (model, how many of each were rewritten).

    - SHAPE of a tensor whose shape is static is a constant: folded (Hiera's attention reshapes
      read shapes; the quantizer left SHAPE reading float, so the file was not full-integer).
    - REDUCE_MAX(x) = -REDUCE_MIN(-x), with MULs by -1 (Hiera's mask-unit max pooling).
    - TILE over axes of size 1 is BROADCAST_TO (SwiftFormer's attention repeats a (1, 1, C) row).
    """
    s = _schema()
    model = _load(data)
    counts = {"shapes_as_constants": 0, "reduce_max_as_negated_min": 0, "tile_as_broadcast_to": 0}
    minus_one: dict[int, int] = {}  # subgraph -> the -1 constant's tensor
    for g, graph in enumerate(model.subgraphs):
        # every shape inside is fixed when the inputs' are (onnx2tf still marks inner axes -1)
        static_inputs = all(_static_shape(graph.tensors[int(i)]) for i in graph.inputs)
        operators = []
        for op in graph.operators:
            kind = _builtin(model, op)
            if kind == s.BuiltinOperator.SHAPE and static_inputs and \
                    all(int(d) > 0 for d in graph.tensors[op.inputs[0]].shape):
                out = graph.tensors[op.outputs[0]]
                dtype = np.int64 if out.type == s.TensorType.INT64 else np.int32
                out.buffer = _add_buffer(model, np.asarray(graph.tensors[op.inputs[0]].shape, dtype=dtype))
                counts["shapes_as_constants"] += 1
                continue  # the op goes; its output is now a constant
            if kind == s.BuiltinOperator.REDUCE_MAX and graph.tensors[op.inputs[0]].type == s.TensorType.FLOAT32:
                if g not in minus_one:
                    minus_one[g] = _add_tensor(model, graph, "edgeport/minus_one", [], s.TensorType.FLOAT32,
                                               np.asarray(-1.0, dtype=np.float32))
                x, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
                negated = _add_tensor(model, graph, f"{_name(x)}/edgeport_negated", list(x.shape), x.type)
                smallest = _add_tensor(model, graph, f"{_name(out)}/edgeport_min_of_negated", list(out.shape), out.type)
                operators.append(_mul(model, [op.inputs[0], minus_one[g]], negated))
                op.opcodeIndex = _opcode_index(model, s.BuiltinOperator.REDUCE_MIN)
                op.inputs = [negated, *op.inputs[1:]]
                original_out = op.outputs[0]
                op.outputs = [smallest]
                operators.append(op)
                operators.append(_mul(model, [smallest, minus_one[g]], original_out))
                counts["reduce_max_as_negated_min"] += 1
                continue
            if kind == s.BuiltinOperator.TILE and len(op.inputs) == 2:
                multiples = _constant(model, graph.tensors[op.inputs[1]])
                x = graph.tensors[op.inputs[0]]
                if multiples is not None and static_inputs and all(
                        m == 1 or d == 1 for m, d in zip(multiples.tolist(), list(x.shape))):
                    shape = np.asarray([d * m for d, m in zip(list(x.shape), multiples.tolist())], dtype=np.int32)
                    target = _add_tensor(model, graph, f"{_name(x)}/edgeport_broadcast_shape", [len(shape)],
                                         s.TensorType.INT32, shape)
                    op.opcodeIndex = _opcode_index(model, s.BuiltinOperator.BROADCAST_TO)
                    op.inputs = [op.inputs[0], target]
                    op.builtinOptionsType = s.BuiltinOptions.NONE
                    op.builtinOptions = None
                    counts["tile_as_broadcast_to"] += 1
            operators.append(op)
        graph.operators = operators
        _drop_unused_tensors(model, g)
    if not any(counts.values()):
        return data, counts
    return _save(model), counts


def _static_shape(tensor) -> bool:
    signature = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    return tensor.shape is not None and all(int(d) >= 0 for d in signature) and all(int(d) > 0 for d in tensor.shape)


def _name(tensor) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def _add_tensor(model, graph, name: str, shape: list[int], dtype: int, value: np.ndarray | None = None) -> int:
    """A new tensor in ``graph`` (a constant when ``value`` is given); returns its index."""
    s = _schema()
    tensor = s.TensorT()
    tensor.name = name
    tensor.shape = [int(d) for d in shape]
    tensor.type = dtype
    tensor.buffer = _add_buffer(model, value) if value is not None else 0  # buffer 0: the empty one
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _mul(model, inputs: list[int], output: int):
    s = _schema()
    op = s.OperatorT()
    op.opcodeIndex = _opcode_index(model, s.BuiltinOperator.MUL)
    op.inputs = list(inputs)
    op.outputs = [output]
    op.builtinOptionsType = s.BuiltinOptions.MulOptions
    op.builtinOptions = s.MulOptionsT()
    return op
