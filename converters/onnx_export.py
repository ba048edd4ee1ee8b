"""PyTorch (Hugging Face) -> ONNX fp32, with optimum's exporter.

The default opset is 20, the first with a ``Gelu`` operator: onnx2tf turns it into the
TFLite ``GELU`` builtin. At opset 18 GELU is exported as Erf arithmetic, which onnx2tf
either emits as a Flex op or replaces with a pseudo-Erf whose int8 form divides by zero.

optimum's vision export configs mark channels, height and width as dynamic as well as the
batch. onnx2tf cannot lay out a graph whose channel count is unknown, and a static size lets
it fold every shape, so after export the input is pinned to (batch, C, H, W) with the batch
axis left dynamic. H x W is what the model's image processor produces (its crop, for
processors that crop), which need not be ``config.image_size`` (ConvNeXt and ResNet configs
say 224 whatever their processor does); without it, ``config.image_size``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgeport.converters.atomic import atomic_path
from edgeport.converters.onnx_batch import check_batch
from edgeport.converters.onnx_rewrites import average_pools_as_global
from edgeport.converters.quiet import quiet

DEFAULT_OPSET = 20


def export_onnx(
    source: str,
    out_path: str | Path,
    *,
    revision: str | None = None,
    opset: int = DEFAULT_OPSET,
    input_size: tuple[int, int] | None = None,
) -> dict:
    """Export ``source`` (a local model directory or a hub id) to ``out_path`` as ONNX fp32.

    The result has one input ``pixel_values`` (batch, C, H, W) and one output ``logits``
    (batch, num_labels), the batch axis dynamic. Returns the settings for the manifest:
    which optimum export config was used.
    """
    import onnx
    from optimum.exporters.onnx import main_export
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, revision=revision)
    if input_size is not None:
        height, width = input_size
    else:
        size = config.image_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
    channels = getattr(config, "num_channels", 3)

    custom, settings = _onnx_config_for(config)
    shape = (channels, height, width)
    with tempfile.TemporaryDirectory(prefix="edgeport-onnx-") as tmp, _quiet():
        try:
            main_export(
                source,
                output=tmp,
                task="image-classification",
                opset=opset,
                revision=revision,
                device="cpu",
                do_validation=False,  # edgeport validates every variant on real images itself
                custom_onnx_configs=custom,
                # traced at the size the file is pinned to: a trace at optimum's default 64x64
                # bakes size-dependent values (BiT's "SAME" padding) that are wrong at any other
                # size; BiT's 32x32 onnx-fp32 was 0.15 off PyTorch (2.15 trained) that way
                height=height, width=width, num_channels=channels,
            )
            model = onnx.load(os.path.join(tmp, "model.onnx"))
            settings["exporter"] = "optimum (TorchScript)"
        except Exception as exc:  # e.g. MobileViTV2: TorchScript cannot export nn.Fold (col2im)
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            model = _export_with_dynamo(source, revision, opset, shape)
            settings.update(exporter="torch.onnx dynamo", exporter_fallback_reason=f"optimum failed: {why}")
        checked = Path(tmp) / "checked.onnx"
        onnx.save(_finish(model, shape, config.num_labels, settings), str(checked))
        # The batch axis is declared dynamic; a TorchScript trace can still have baked its batch
        # into a Reshape. Then torch.export, which refuses to specialize a declared dynamic axis,
        # gets a second chance; a file that still cannot take any batch is pinned to batch 1 by
        # the pipeline's check (converters.onnx_batch), which runs on every ONNX variant.
        _, problem = check_batch(checked)
        if problem and settings["exporter"] != "torch.onnx dynamo":
            try:
                redone = _finish(_export_with_dynamo(source, revision, opset, shape), shape, config.num_labels,
                                 settings)
                onnx.save(redone, str(checked))
                settings.update(exporter="torch.onnx dynamo",
                                exporter_fallback_reason=f"optimum's file cannot take any batch: {problem}")
            except Exception as exc:  # keep optimum's file: the pipeline pins it to batch 1
                settings["dynamo_reexport_failed"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        with atomic_path(out_path) as tmp_path:
            shutil.copyfile(checked, tmp_path)
    return settings


def _finish(model, shape: tuple[int, int, int], num_labels: int, settings: dict):
    """The exported graph as edgeport ships it: input (batch, C, H, W) with only the batch
    symbolic, output (batch, num_labels), shapes inferred, checked."""
    import onnx
    from onnx.tools import update_model_dims

    # The dynamo exporter also lists the weights in value_info; onnxruntime's quantizers rewrite
    # some weights (Gemm -> MatMul transposes B) and then fail on the stale shape ("Inferred
    # shape and existing shape differ"). Weights carry their shapes anyway.
    initializers = {init.name for init in model.graph.initializer}
    kept = [v for v in model.graph.value_info if v.name not in initializers]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    pools = average_pools_as_global(model, (1, *shape))  # see converters.onnx_rewrites
    if pools:
        settings["average_pools_as_global"] = pools
    model = update_model_dims.update_inputs_outputs_dims(
        model, {"pixel_values": ["batch_size", *shape]}, {"logits": ["batch_size", num_labels]})
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def _export_with_dynamo(source: str, revision: str | None, opset: int, shape: tuple[int, int, int]):
    """The model's logits exported by PyTorch's own (torch.export-based) ONNX exporter.

    The fallback when optimum's TorchScript export fails: torch.export traces ops that the
    TorchScript exporter has no symbolic for (MobileViTV2's nn.Fold). Batch stays dynamic: the
    example has 2 images, since torch.export specializes an axis whose example size is 1 (a
    batch-1 example baked the batch into SigLIP's reshapes).
    """
    import torch

    from edgeport.converters.torch_logits import logits_module

    batch = torch.export.Dim("batch_size", min=1, max=4096)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(logits_module(source, revision), (torch.zeros((2, *shape)),), dynamo=True,
                                    opset_version=opset, input_names=["pixel_values"], output_names=["logits"],
                                    dynamic_shapes={"pixel_values": {0: batch}}, verbose=False)
    return program.model_proto


def _onnx_config_for(config) -> tuple[dict | None, dict]:
    """optimum's own export config for the model type, else its generic vision one.

    Every image classifier transformers ships takes ``pixel_values`` and returns ``logits``,
    which is all ViTOnnxConfig declares; optimum simply has no entry for some model types
    (MobileViTV2 in optimum-onnx 0.1.0), so those get that config rather than a refusal.
    """
    import optimum.exporters.onnx  # noqa: F401  (fills the TasksManager registry)
    from optimum.exporters.tasks import TasksManager

    model_type = config.model_type.replace("_", "-")
    known = model_type in TasksManager._SUPPORTED_MODEL_TYPE or config.model_type in TasksManager._SUPPORTED_MODEL_TYPE
    if known:
        try:
            tasks = TasksManager.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers")
        except KeyError:
            tasks = {}
        if "image-classification" in tasks:
            return None, {"onnx_config": f"optimum ({config.model_type})"}
    from optimum.exporters.onnx.model_configs import ViTOnnxConfig

    return ({"model": ViTOnnxConfig(config, task="image-classification")},
            {"onnx_config": f"optimum's generic vision config (ViTOnnxConfig): optimum has none for "
                            f"{config.model_type} image classification"})


def _quiet():
    """Hide the tracer's known ViT warnings (shape checks traced as constants) and optimum's chatter."""
    return quiet("transformers", "optimum")
