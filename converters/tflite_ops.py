"""Which operators a .tflite file uses, and the builtin-only rule for mobile hand-off.

A Flex (SELECT_TF_OPS) or custom op needs extra runtime libraries on the phone, so a file
that holds one fails its variant, naming the ops.
"""
from __future__ import annotations

from pathlib import Path

from converters.onnx2tf_tool import ConversionError


def _schema():
    # ai-edge-litert ships the TFLite flatbuffer schema; reading it needs no TensorFlow import.
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def tflite_operators(path: str | Path) -> list[str]:
    """Sorted operator names in ``path``: builtin names, or the custom code (e.g. FlexErf)."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            ops.add(custom.decode() if isinstance(custom, bytes) else (custom or "CUSTOM"))
        else:
            ops.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(ops)


def non_builtin_operators(path: str | Path) -> list[str]:
    """The Flex and custom operators of ``path`` (empty when builtin-only)."""
    builtin_names = {k for k in vars(_schema().BuiltinOperator) if not k.startswith("_")}
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
