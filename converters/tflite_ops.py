"""Which operators a .tflite file uses, and the builtin-only rule for mobile hand-off.

A Flex (SELECT_TF_OPS) or custom op needs extra runtime libraries on the phone, so a file
that holds one fails its variant, naming the ops.
"""
from __future__ import annotations

from pathlib import Path

from edgeport.converters.onnx2tf_tool import ConversionError


def tflite_schema():
    """The TFLite flatbuffer schema module (ai-edge-litert ships it; no TensorFlow import)."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def builtin_code(code: int, deprecated_code: int) -> int:
    """An operator code's builtin operator: codes above 127 live only in the schema's
    ``builtin_code``; files written before it existed set only ``deprecated_builtin_code``."""
    return max(code, deprecated_code)


def _enum_names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def tflite_operators(path: str | Path) -> list[str]:
    """Sorted operator names in ``path``: builtin names, or the custom code (e.g. FlexErf)."""
    schema = tflite_schema()
    names = _enum_names(schema.BuiltinOperator)
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = builtin_code(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            ops.add(custom.decode() if isinstance(custom, bytes) else (custom or "CUSTOM"))
        else:
            ops.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(ops)


def non_builtin_operators(path: str | Path) -> list[str]:
    """The Flex and custom operators of ``path`` (empty when builtin-only)."""
    builtin_names = set(_enum_names(tflite_schema().BuiltinOperator).values())
    return [op for op in tflite_operators(path) if op not in builtin_names]


def require_builtin_ops(path: str | Path) -> list[str]:
    """Raise ConversionError naming the Flex/custom ops of ``path``; return its op list otherwise."""
    extra = non_builtin_operators(path)
    if extra:
        raise ConversionError(
            f"{Path(path).name} needs non-builtin TFLite ops {', '.join(extra)} "
            "(Flex/SELECT_TF_OPS or custom): it would not run on a stock mobile TFLite runtime"
        )
    return tflite_operators(path)


def op_precisions(path: str | Path) -> dict[str, int]:
    """Count of operators by 'OP:dtype of its first input', e.g. {'FULLY_CONNECTED:INT8': 25}.

    Recorded in the manifest so a reader sees at a glance whether a file is full-integer.
    """
    schema = tflite_schema()
    names = _enum_names(schema.BuiltinOperator)
    types = _enum_names(schema.TensorType)
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    counts: dict[str, int] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(builtin_code(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            first = op.Inputs(0) if op.InputsLength() else -1
            dtype = types.get(graph.Tensors(first).Type(), "?") if first >= 0 else "-"
            key = f"{name}:{dtype}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def float_compute_ops(path: str | Path) -> list[str]:
    """Operators of ``path`` that compute in float, apart from the QUANTIZE/DEQUANTIZE at its edges."""
    return float_ops_in(op_precisions(path))


def float_ops_in(precisions: dict[str, int]) -> list[str]:
    """``float_compute_ops`` of an ``op_precisions`` result."""
    return sorted({k.split(":")[0] for k in precisions
                   if k.endswith(("FLOAT32", "FLOAT16")) and not k.startswith(("QUANTIZE", "DEQUANTIZE"))})
