"""Run inside the onnx2tf child (TensorFlow backend), before ``onnx2tf.main()``; not imported by edgeport.

onnx2tf 2.6.9 records, for every tensor, whether its TF value is the channel-last transpose of
the ONNX tensor (``before_op_output_shape_trans``), judged by comparing the two shapes
(``onnx2tf.utils.common_functions.inverted_operation_enable_disable``). When every non-batch
dimension is equal ([1, 64, 64], [16, 16, 16], [1, 16, 16, 16]) the shapes cannot tell, and it
always answers "transposed" (MatMul excepted). For a Reshape, Transpose, LayerNormalization,
Add... output that is in ONNX layout, later ops then map their axes NCHW -> NHWC and compute
wrong values without any error: ViT's patch Transpose(0, 2, 1) becomes an identity when
num_patches == hidden_size, Swin's shifted-window slices cut the wrong axis when H == W == C.

For those ambiguous outputs only, this looks at the data: it runs the TF graph built so far on
onnx2tf's own dummy input and compares it with onnxruntime's value of the same tensor (which
onnx2tf has already computed for its checks). A tensor that equals the ONNX layout, and clearly
not the channel-last one, gets the flag cleared. Spatial ops (Conv, pools, Resize, ...) ignore
the flag and take any square input as channel-last, so they are given a channel-last view of
such a tensor. When the data cannot decide, onnx2tf's own guess stands; a model with no square
tensor (the bundled ViTs, ViT-B/16) converts exactly as before.
"""
import functools

import numpy as np
import onnx2tf.utils.common_functions as _common

_ONNX_LAYOUT = "edgeport_onnx_layout"
# onnx2tf ops that decide NCHW/NHWC from shapes alone and treat a square input as channel-last.
_SPATIAL_OPS = {"AveragePool", "Conv", "ConvInteger", "ConvTranspose", "DeformConv", "GlobalAveragePool",
                "GlobalLpPool", "GlobalMaxPool", "GridSample", "LpPool", "MaxPool", "MaxRoiPool",
                "QLinearConv", "Resize", "ScaleAndTranslate", "Upsample"}
_original_decorator = _common.inverted_operation_enable_disable


def _square(shape) -> bool:
    if shape is None or shape.rank is None or shape.rank < 3:
        return False
    dims = shape.as_list()
    return None not in dims and len(set(dims[1:])) == 1


def _channel_last(rank: int) -> list:
    return [0, *range(2, rank), 1]


def _tf_value(tf_node, kwargs) -> np.ndarray:
    if hasattr(tf_node, "numpy"):
        return np.asarray(tf_node.numpy())
    import tf_keras

    inputs = _common.get_tf_model_inputs(tf_layers_dict=kwargs["tf_layers_dict"])
    model = tf_keras.Model(inputs=inputs, outputs=[tf_node])
    outputs = _common.dummy_tf_inference(
        model=model, inputs=inputs, test_data_nhwc=kwargs.get("test_data_nhwc"),
        custom_input_op_name_np_data_path=kwargs.get("custom_input_op_name_np_data_path"))
    return np.asarray(next(iter(outputs.values())))


def _correct_outputs(node, layers, reference, kwargs) -> None:
    for output in node.outputs:
        info = layers.get(output.name, {})
        tf_node = info.get("tf_node")
        if tf_node is None or not info.get("before_op_output_shape_trans"):
            continue
        shape = getattr(tf_node, "shape", None)
        onnx_value = reference.get(output.name)
        if not _square(shape) or onnx_value is None or list(onnx_value.shape) != shape.as_list():
            continue
        try:
            tf_value = _tf_value(tf_node, kwargs)
        except Exception:  # the partial graph cannot run: keep onnx2tf's guess
            continue
        scale = float(np.abs(onnx_value).max()) + 1e-12
        same = float(np.abs(tf_value - onnx_value).max())
        channel_last = float(np.abs(tf_value - onnx_value.transpose(_channel_last(onnx_value.ndim))).max())
        if same <= 1e-3 * scale and channel_last > 1e-2 * scale:
            info["before_op_output_shape_trans"] = False
            info[_ONNX_LAYOUT] = True
            print(f"edgeport: {node.op} output {output.name} {shape.as_list()} is in ONNX layout "
                  f"(max abs diff {same:.2g}, channel-last {channel_last:.2g})", flush=True)


def _decorator(func):
    wrapped = _original_decorator(func)

    @functools.wraps(func)
    def make_node(*args, **kwargs):
        node = kwargs.get("graph_node")
        layers = kwargs.get("tf_layers_dict")
        reference = kwargs.get("onnx_tensor_infos_for_validation")
        if node is None or layers is None or not reference:
            return wrapped(*args, **kwargs)
        views = []
        if node.op in _SPATIAL_OPS:
            import tensorflow as tf

            for graph_input in node.inputs:
                info = layers.get(getattr(graph_input, "name", None))
                if info and info.get(_ONNX_LAYOUT):
                    views.append((info, info["tf_node"]))
                    info["tf_node"] = tf.transpose(info["tf_node"], perm=_channel_last(len(info["tf_node"].shape)))
                    info["before_op_output_shape_trans"] = True
        try:
            result = wrapped(*args, **kwargs)
        finally:
            for info, tf_node in views:
                info["tf_node"] = tf_node
                info["before_op_output_shape_trans"] = False
        if node.op != "MatMul":  # onnx2tf never applies the square guess to MatMul
            _correct_outputs(node, layers, reference, kwargs)
        return result

    return make_node


# onnx2tf imports its op modules (which apply this decorator) only while converting.
_common.inverted_operation_enable_disable = _decorator
