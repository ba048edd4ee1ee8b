"""PyTorch -> ExecuTorch int8 (PT2E with the XNNPACK quantizer), float where measurement says so.

The XNNPACK quantizer annotates every Linear and Conv and the Adds, Muls, Cats and pools between
them for int8 (``candidate_nodes``). The precision search (``converters.precision_search``)
starts with all of them int8 and, while the held-out calibration images miss the variant's
budget, leaves the most sensitive nodes out of the quantizer's annotation (``_quantizer``), so
that they run in float (XNNPACK's fp32 kernels) between int8 neighbours.

Costs, measured on emotion-vit (2 cores): one build is capture + ``prepare_pt2e`` + convert +
lowering to XNNPACK, about 50 s, of which lowering is 45 s (the partitioner's passes, per
delegate partition); calibrating 256 images through the observers adds 12 s (on ViT-B/16
about 14 min). Calibration therefore runs once: PT2E's observers watch the float model, so
what an observer records of a tensor does not depend on which other nodes are quantized,
and each round's observers are filled from the first round's (``CalibratedCapture``; a round
with an observer the first did not have calibrates again).

A node's sensitivity is measured without lowering: in the converted (reference) graph, the
node's inputs are rewired around their quantize/dequantize pairs and its weight is the float
one (``node_to_float``), and the logit error that goes away is its cost, as for ONNX. The
rounds are judged without lowering too, on the converted graph, and only the choice is lowered
and judged as a program (``search_executorch_int8``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.converters.precision_search import Holdout, SearchResult, Target, search_precision

# aten ops the search may return to float: the quantized compute ops (what ONNX's MatMul/Gemm/Conv are)
CANDIDATE_OPS = ("aten.linear.default", "aten.conv1d.default", "aten.conv2d.default", "aten.conv3d.default",
                 "aten.matmul.default", "aten.bmm.default")
_DEQUANTIZE = ("quantized_decomposed.dequantize_per_tensor.default",
               "quantized_decomposed.dequantize_per_channel.default")
_QUANTIZE = "quantized_decomposed.quantize_per_tensor.default"
# held-out images each node's cost is measured on: the reference graph runs its decomposed
# quantize/dequantize ops in eager PyTorch, about 31 ms an image on emotion-vit, 50 nodes a round
SENSITIVITY_IMAGES = 32
# Up to this many int8 nodes each is measured alone every round (precision_search.rank's
# flat_max); above, in groups first: a measurement is a run of the converted graph over
# SENSITIVITY_IMAGES images, about a second on gender-vit, whose 58 nodes one by one were
# about a minute a round.
FLAT_MAX = 16


def _quantizer(float_nodes: set[str]):
    """XNNPACK's quantizer (int8 per-channel symmetric weights, int8 per-tensor activations),
    leaving the nodes ``float_nodes`` (capture node names) unquantized."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)

    class Quantizer(XNNPACKQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            _strip(model, float_nodes)
            return model

    quantizer = Quantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    if float_nodes:
        # node names of a torch.export capture are deterministic for the same module and input
        quantizer.set_filter_function(lambda node: node.name not in float_nodes)
    return quantizer


def _strip(model, float_nodes: set[str]) -> None:
    """Remove the annotations of ``float_nodes`` and of every node whose quantization is shared
    with one of them. The filter function alone is not enough: XNNPACK's Cat annotator ignores
    it (executorch 1.5.1), and views propagate their producer's annotation."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    removed: set = set()

    def refers(spec) -> bool:
        if not isinstance(spec, SharedQuantizationSpec):
            return False
        target = spec.edge_or_node
        return any(t in removed for t in (target if isinstance(target, tuple) else (target,)))

    for node in model.graph.nodes:  # graph order: a node that shares follows what it shares with
        annotation = node.meta.get("quantization_annotation")
        if annotation is None:
            continue
        if node.name in float_nodes or refers(annotation.output_qspec) \
                or any(refers(spec) for spec in annotation.input_qspec_map.values()):
            del node.meta["quantization_annotation"]
            removed.add(node)


class CalibratedCapture:
    """The model captured once for PT2E, its calibration statistics kept across re-quantizations."""

    def __init__(self, module, example: tuple, calibration: np.ndarray) -> None:
        self.module, self.example, self.calibration = module, example, calibration
        self.batched = True  # captured with a dynamic batch: run_graph runs chunks of images at once
        try:
            self.float_graph = self.capture()  # float weights, by node name
        except Exception:  # a model whose code fixes its batch: captured at batch 1, run image by image
            self.batched = False
            self.float_graph = self.capture()
        self._stats: dict[tuple, dict[str, Any]] = {}
        self.calibrations = 0  # runs over the calibration images (the first, and rounds with new observers)

    def capture(self):
        """A fresh ``torch.export`` capture of the module (its graph module), every time the same graph.

        With a dynamic batch where the model allows it: the converted graphs are run in PyTorch to
        judge each round and to rank the nodes, and one image at a time that is Python's dispatch
        of every node per image (gender-vit: about 16 ms an image, most of the search's own time).
        The program is still lowered at batch 1 (its export specializes the batch)."""
        import torch

        if not self.batched:
            return torch.export.export(self.module, self.example).module()
        x = self.example[0]
        two = (torch.zeros((2, *x.shape[1:]), dtype=x.dtype),)  # batch 1 would be specialized to 1
        return torch.export.export(self.module, two, dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},)).module()

    def convert(self, float_nodes: list[str] | None = None):
        """The converted (reference int8) graph with ``float_nodes`` left out of the quantization."""
        import torch
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        prepared = prepare_pt2e(self.capture(), _quantizer(set(float_nodes or [])))
        observers = _observers(prepared)
        missing = {key: obs for key, obs in observers.items() if key not in self._stats}
        for key, obs in observers.items():
            if key in self._stats:
                obs.load_state_dict(self._stats[key])
                obs.forward = _passthrough  # already calibrated: the images only feed the missing ones
        if missing:
            self.calibrations += 1
            for image in self.calibration:
                prepared(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
            self._stats.update({key: {k: v.clone() for k, v in obs.state_dict().items()}
                                for key, obs in missing.items()})
        for obs in observers.values():
            obs.__dict__.pop("forward", None)
        return convert_pt2e(prepared)


def _passthrough(x):
    return x


def _observers(prepared) -> dict[tuple, Any]:
    """The prepared graph's observers keyed by what they observe: (observer type, observed node
    names). Edges that share quantization share one observer object under several module names
    (its histogram then covers every tensor it watches), so observers are told apart by object,
    and a shared one's statistics are reused only where it watches the same set of tensors."""
    from torchao.quantization.pt2e.observer import ObserverBase

    watched: dict[int, tuple[Any, set[str]]] = {}
    for node in prepared.graph.nodes:
        if node.op != "call_module":
            continue
        observer = prepared.get_submodule(node.target)
        if isinstance(observer, ObserverBase):
            watched.setdefault(id(observer), (observer, set()))[1].add(node.args[0].name)
    return {(type(observer).__name__, tuple(sorted(names))): observer for observer, names in watched.values()}


def candidate_nodes(capture: CalibratedCapture) -> list[str]:
    """Names of the nodes that quantize inputs of their own under the XNNPACK quantizer, in graph order.

    Every node it annotates with an input quantization spec that is not shared from another
    (Linear and Conv with their weights, Add, Mul, Cat, pools: whatever its patterns match on
    this graph). Left out: nodes that only carry a neighbour's quantization (views, transposes,
    dropout, the ReLU of a fused Linear+ReLU: output or shared specs only), which return to
    float with the node they follow. Measured on emotion-vit: with every Linear, Conv and MatMul
    in float, the embeddings' Cat and Add kept the .pte at 94.8% held-out agreement.
    """
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    graph = capture.capture()
    quantizer = _quantizer(set())
    graph = quantizer.transform_for_annotation(graph)
    quantizer.annotate(graph)
    names = []
    for node in graph.graph.nodes:
        annotation = node.meta.get("quantization_annotation")
        if node.op != "call_function" or annotation is None or not getattr(annotation, "_annotated", False):
            continue
        if any(spec is not None and not isinstance(spec, SharedQuantizationSpec)
               for spec in annotation.input_qspec_map.values()):
            names.append(node.name)
    return names


def module_of(capture: CalibratedCapture, node_name: str) -> str:
    """The module path a captured node came from (for the manifest), without the logits wrapper."""
    for node in capture.float_graph.graph.nodes:
        if node.name == node_name:
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            path = stack[-1][0] if stack else ""
            return path.removeprefix("inner.")
    return ""


def node_to_float(converted, float_graph, names: list[str], int8: set[str] | frozenset = frozenset()):
    """A copy of the converted graph in which the nodes ``names`` read float activations and weights.

    Their inputs are rewired around their quantize/dequantize pairs; a dequantized weight is
    replaced by the float module's (found through the float capture's node of the same name).
    Their outputs stay quantized only for readers in ``int8`` (candidates still int8, which
    quantize their own inputs in a real build); other readers, and the views after them that
    only carried the pair along, get the float output back.
    """
    import torch

    graph = torch.fx.Graph()
    mapping: dict = {}
    graph.output(graph.graph_copy(converted.graph, mapping))
    copy = torch.fx.GraphModule(converted, graph)
    floats = {n.name: n for n in float_graph.graph.nodes}

    def activation(arg):  # dequantize(quantize(x)) -> x
        if str(arg.target) in _DEQUANTIZE and isinstance(arg.args[0], torch.fx.Node) \
                and str(arg.args[0].target) == _QUANTIZE:
            return arg.args[0].args[0]
        return arg

    for node in list(copy.graph.nodes):
        if node.name not in names:
            continue
        original = floats.get(node.name)
        args = list(torch.fx.node.map_arg(tuple(node.args), activation))
        for i, arg in enumerate(args):
            # what is still dequantized is a weight: the float capture's tensor instead
            if not isinstance(arg, torch.fx.Node) or str(arg.target) not in _DEQUANTIZE or original is None:
                continue
            float_arg = original.args[i] if i < len(original.args) else None
            if isinstance(float_arg, torch.fx.Node) and float_arg.op == "get_attr":
                attr = f"_edgeport_float_{node.name}_{i}"
                copy.register_buffer(attr, _attribute(float_graph, float_arg.target))
                with copy.graph.inserting_before(node):
                    args[i] = copy.graph.get_attr(attr)
        node.args = tuple(args)
        _float_output(node, set(int8) - set(names))
    copy.graph.eliminate_dead_code()
    copy.recompile()
    return copy


def _float_output(node, int8: set[str]) -> None:
    """Readers of ``node``'s quantize/dequantize output pair that are not in ``int8`` read ``node``."""
    for quantize in [u for u in node.users if str(u.target) == _QUANTIZE]:
        for dequantize in [u for u in quantize.users if str(u.target) in _DEQUANTIZE]:
            for reader in list(dequantize.users):
                if reader.name in int8 or reader.op != "call_function":
                    continue
                reader.replace_input_with(dequantize, node)
                _float_output(reader, int8)  # a view that carried the pair along


def _attribute(module, qualified: str):
    for part in qualified.split("."):
        module = getattr(module, part)
    return module


def run_graph(module, inputs: np.ndarray, batched: bool = False, chunk: int = 16) -> np.ndarray:
    """Logits of a captured graph module: ``chunk`` images at a time when it was captured with a
    dynamic batch (``batched``), else image by image."""
    import torch

    def logits(x: np.ndarray) -> np.ndarray:
        out = module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        # a graph copied by node_to_float returns its flat outputs, without the capture's pytree spec
        return (out[0] if isinstance(out, (tuple, list)) else out).numpy()

    step = chunk if batched else 1
    with torch.no_grad():
        return np.concatenate([logits(inputs[i:i + step]) for i in range(0, len(inputs), step)])


def iter_pte(path: Path, inputs: np.ndarray, chunk: int = 16) -> Iterator[np.ndarray]:
    """A ``.pte`` program's logits on ``inputs`` (batch 1), ``chunk`` images at a time."""
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    for i in range(0, len(inputs), chunk):
        yield np.concatenate([method.execute([torch.from_numpy(np.ascontiguousarray(x[None], dtype=np.float32))])[0]
                              .numpy() for x in inputs[i:i + chunk]])


def graph_sensitivity(capture: CalibratedCapture, converted, units: list[list[str]], holdout: Holdout,
                      int8: set[str], images: int = SENSITIVITY_IMAGES) -> list[float]:
    """Each unit's cost: the drop in mean squared logit error (against the float model) when that
    unit alone reads float, as a fraction of the reference int8 graph's error."""
    inputs, reference = holdout.subset(images)
    error = float(np.mean((run_graph(converted, inputs, capture.batched) - reference) ** 2))
    if error == 0:
        return [0.0] * len(units)
    return [(error - float(np.mean((run_graph(node_to_float(converted, capture.float_graph, unit, int8), inputs,
                                              capture.batched) - reference) ** 2))) / error for unit in units]


def search_executorch_int8(capture: CalibratedCapture, lower: Callable[[Any], bytes], scratch: Path,
                           holdout: Holdout, target: Target,
                           log: Callable[[str], None] = print) -> tuple[Path, SearchResult, list[str]]:
    """Run the precision search over ``capture``'s int8 nodes; (chosen .pte, result, candidates).

    ``lower`` turns a converted graph into the ``.pte`` bytes (capture of it + XNNPACK lowering).

    Two searches, because lowering is what costs (on gender-vit about 60 s a program on 2
    cores, against 2-3 s to convert): the first judges each round's converted graph itself
    (``run_graph``: PyTorch runs its quantize/dequantize pairs, the arithmetic the XNNPACK
    program runs in int8); the second starts from the nodes the first chose and judges the
    lowered ``.pte``, so a choice that holds in the program costs one lowering, and one that
    does not goes on raising from there as the search always did. The result's rounds are both
    searches' (``judged``: "graph" or "program"); only a program round is chosen. Nodes are
    ranked in groups first above ``FLAT_MAX`` of them: one measurement is a run of the
    graph over ``SENSITIVITY_IMAGES`` images, about a second on gender-vit (``FLAT_MAX``).
    """
    start = time.perf_counter()
    converted: dict[Path, Any] = {}
    rounds = iter(range(10_000))
    first = capture.convert([])  # calibrates: every later round reuses its statistics
    candidates = candidate_nodes(capture)

    def convert(raised: list[str]):
        return capture.convert(raised) if raised else first

    def graph_of(raised: list[str]) -> Path:  # a name for the converted graph (nothing is written)
        key = scratch / f"round{next(rounds)}.graph"
        converted[key] = convert(raised)
        return key

    def program_of(raised: list[str]) -> Path:
        path = scratch / f"round{next(rounds)}.pte"
        converted[path] = convert(raised)
        path.write_bytes(lower(converted[path]))
        return path

    def graph_logits(key: Path, chunk: int = 16) -> Iterator[np.ndarray]:
        for i in range(0, len(holdout.inputs), chunk):
            yield run_graph(converted[key], holdout.inputs[i:i + chunk], capture.batched, chunk)

    def sensitivity(path: Path, raised: list[str], units: list[list[str]]) -> list[float]:
        return graph_sensitivity(capture, converted[path], units, holdout, set(candidates) - set(raised))

    on_graph = search_precision(candidates, graph_of, graph_logits, sensitivity, holdout, target,
                                log=lambda m: log(f"{m.strip()} (the converted graph)"), unit="nodes", flat_max=FLAT_MAX)
    chosen = [r["name"] for r in on_graph.raised]
    result = search_precision(candidates, program_of, lambda path: iter_pte(path, holdout.inputs), sensitivity,
                              holdout, target, log=log, unit="nodes", flat_max=FLAT_MAX, start=chosen)
    for row in on_graph.rounds:
        row.pop("chosen", None)
        row["judged"] = "graph"
    for row in result.rounds:
        row["judged"] = "program"
    result.rounds = on_graph.rounds + result.rounds
    result.started_from = f"the search on the converted graph ({len(on_graph.rounds)} rounds)"
    result.seconds = time.perf_counter() - start
    return result.path, result, candidates
