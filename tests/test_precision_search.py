"""The int8 precision search: held-out split, the search loop, and a deliberately sensitive layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeport.converters.precision_search import Holdout, Target, search_precision, split_holdout


def test_holdout_is_interleaved_and_disjoint():
    calib, held = split_holdout(10)
    assert list(held) == [1, 3, 5, 7, 9] and list(calib) == [0, 2, 4, 6, 8]
    calib, held = split_holdout(100)  # 50 held out, in an order whose every prefix spans the folders
    assert sorted(held) == list(range(1, 100, 2)) and list(held[:4]) == [1, 33, 65, 97]
    calib, held = split_holdout(3)  # too few for every 2nd: still two held out
    assert len(held) == 2 and set(calib) | set(held) == {0, 1, 2} and not set(calib) & set(held)


def test_judge_measures_agreement_and_accuracy_drop():
    ref = np.eye(4)[[0, 1, 2, 3]]
    holdout = Holdout(np.zeros((4, 1)), ref, labels=np.array([0, 1, 2, 0]))
    logits = np.eye(4)[[0, 1, 3, 3]]
    got = holdout.judge(logits, Target(min_agreement=0.5, max_accuracy_drop=25.0))
    # 3 of 4 agree: Wilson lower bound (z=1) 0.5; drop 25 points, +1 standard error (1 discordant image) 50
    assert got == {"agreement": 0.75, "agreement_lower": 0.5, "accuracy_drop": 25.0, "accuracy_drop_upper": 50.0,
                   "passed": True}
    assert not holdout.judge(logits, Target(min_agreement=0.51))["passed"]
    assert holdout.judge(logits, Target(max_accuracy_drop=25.0))["passed"]  # the drop: its point estimate
    assert not holdout.judge(logits, Target(max_accuracy_drop=24.9))["passed"]
    assert not holdout.judge(logits, Target(min_agreement=0.75))["passed"]  # the point estimate alone is not enough


def _synthetic(needed: set[str], n: int = 40):
    """A fake backend: the file agrees with the reference only once every layer in ``needed`` is raised."""
    ref = np.eye(2)[np.arange(n) % 2]
    built: list[list[str]] = []

    def build(raised):
        built.append(list(raised))
        return Path(f"round{len(built) - 1}")

    def run(path):
        raised = set(built[int(path.name[5:])])
        wrong = 4 * len(needed - raised)  # each missing layer flips 4 of 40 images
        return np.concatenate([1 - ref[:wrong], ref[wrong:]])

    def sensitivity(path, raised, units):
        assert not any(name in raised for unit in units for name in unit)
        return [sum(1.0 if name in needed else 0.1 for name in unit) for unit in units]

    return build, run, sensitivity, Holdout(np.zeros((n, 1)), ref)


def test_search_raises_only_the_layers_the_budget_needs():
    build, run, sensitivity, holdout = _synthetic({"c", "f", "g"})
    result = search_precision(list("abcdefgh"), build, run, sensitivity, holdout, Target(min_agreement=0.97),
                              log=lambda m: None)
    assert result.passed and sorted(r["name"] for r in result.raised) == ["c", "f", "g"]
    assert result.rounds[0]["raised"] == 0 and result.rounds[0]["agreement"] == 0.7 and not result.rounds[0]["passed"]
    assert [r for r in result.rounds if r.get("chosen")] == [r for r in result.rounds if r["raised"] == 3]


def test_a_search_that_starts_from_a_siblings_choice_ends_there_when_it_passes():
    build, run, sensitivity, holdout = _synthetic({"c", "f"})
    result = search_precision(list("abcdefgh"), build, run, sensitivity, holdout, Target(min_agreement=0.97),
                              log=lambda m: None, start=["f", "c", "x"])  # "x" is not a candidate here
    assert result.passed and len(result.rounds) == 1 and result.rounds[0]["raised"] == 2
    assert [r["name"] for r in result.raised] == ["c", "f"]  # in candidate order


def test_a_search_whose_start_misses_goes_on_from_it():
    build, run, sensitivity, holdout = _synthetic({"c", "f", "g"})
    result = search_precision(list("abcdefgh"), build, run, sensitivity, holdout, Target(min_agreement=0.97),
                              log=lambda m: None, start=["c"])
    assert result.rounds[0]["raised"] == 1 and not result.rounds[0]["passed"]
    assert result.passed and {"c", "f", "g"} <= {r["name"] for r in result.raised}


def test_search_that_cannot_pass_returns_its_best_round_as_failed():
    build, run, sensitivity, holdout = _synthetic({"c"})
    result = search_precision(list("abcdefgh"), build, run, sensitivity, holdout, Target(min_agreement=1.01),
                              log=lambda m: None)
    assert not result.passed and len(result.rounds) > 1
    chosen = next(r for r in result.rounds if r.get("chosen"))
    assert chosen["agreement"] == 1.0 and chosen["raised"] == 8  # of equal rounds, the most raised


def test_many_layers_are_ranked_in_groups_then_inside_the_costliest(monkeypatch):
    from edgeport.converters import precision_search
    from edgeport.converters.precision_search import rank

    monkeypatch.setattr(precision_search, "FLAT_RANKING_MAX", 16)
    layers = [f"l{i:02d}" for i in range(64)]  # over 16: ranked in groups of 8
    cost = {name: 0.01 for name in layers}
    cost.update({"l41": 0.5, "l44": 0.3, "l03": 0.2})
    measured_units: list[list[str]] = []

    def sensitivity(path, raised, units):
        measured_units.extend(units)
        return [sum(cost[n] for n in unit) for unit in units]

    ranking, measured = rank(Path("f"), [], layers, 2, sensitivity)
    assert ranking[:2] == ["l41", "l44"] and sorted(ranking) == layers
    # 8 groups, then the 8 layers of the costliest group (l40-l47) alone: 16 measurements, not 64
    assert len(measured_units) == 16 and [len(u) for u in measured_units[:8]] == [8] * 8
    assert measured["l41"] == (0.5, 1) and measured["l03"] == (pytest.approx(0.27), 8)  # only its group's figure
    # the next group (l00-l07, with l03: 0.27) outranks the rest of l41's group (0.01 each) and,
    # beyond this round's 2 layers, keeps graph order: not measured alone
    assert ranking[2:10] == layers[:8] and set(ranking[-6:]) == {"l40", "l42", "l43", "l45", "l46", "l47"}

    # with a memo, later rounds reuse the group figures and measure a group's layers only when first reached
    memo: dict = {}
    rank(Path("f"), [], layers, 2, sensitivity, memo)
    measured_units.clear()
    left = [name for name in layers if name not in ("l41", "l44")]
    ranking, measured = rank(Path("g"), ["l41", "l44"], left, 4, sensitivity, memo)
    assert measured_units == [[name] for name in layers[:8]]  # only l00-l07, alone
    assert ranking[0] == "l03" and sorted(ranking) == sorted(left)
    measured_units.clear()
    rank(Path("h"), ["l41", "l44", "l03"], [n for n in left if n != "l03"], 4, sensitivity, memo)
    assert [len(u) for u in measured_units] == [1] * 8  # the next group reached, l08-l15: none re-measured
    # a round that takes a whole group raises it without measuring its layers
    measured_units.clear()
    left = [n for n in left if n != "l03"]
    ranking, _ = rank(Path("i"), ["l41", "l44", "l03"], left, 16, sensitivity, memo)
    assert measured_units == [] and ranking[:16] == layers[16:32]  # two whole groups, graph order


def test_judge_stream_stops_once_the_budget_is_out_of_reach():
    n = 128
    ref = np.eye(2)[np.arange(n) % 2]
    holdout = Holdout(np.zeros((n, 1)), ref)
    target = Target(min_agreement=0.97)
    allowed = holdout.allowed_disagreements(target)
    from edgeport.converters.precision_search import wilson_lower
    assert wilson_lower(n - allowed, n, 1.0) >= 0.97 > wilson_lower(n - allowed - 1, n, 1.0)
    served: list[int] = []

    def chunks(logits):
        for start in range(0, n, 16):
            served.append(start)
            yield logits[start:start + 16]

    bad = ref.copy()
    bad[:3 * (allowed + 1):3] = 1 - bad[:3 * (allowed + 1):3]  # allowed + 1 disagreements early on
    row = holdout.judge_stream(chunks(bad), target)
    assert not row["passed"] and row["images"] == 16 * len(served) < n and "stopped_early" in row
    assert row["agreement"] == pytest.approx(1 - (allowed + 1) / row["images"])
    assert holdout.judge(bad, target)["passed"] is False  # the same verdict as judging them all
    served.clear()
    edge = ref.copy()
    edge[n - allowed:] = 1 - edge[n - allowed:]  # exactly the allowed number, at the end: all judged, passes
    row = holdout.judge_stream(chunks(edge), target)
    assert row["passed"] and row["images"] == n and len(served) == n // 16
    assert {k: v for k, v in row.items() if k != "images"} == holdout.judge(edge, target)


def _sensitive_mlp(path: Path) -> Path:
    """An ONNX MLP whose fc1 writes, and fc2 reads, one activation channel 1000x larger than the rest.

    The float function is unchanged (ReLU commutes with a positive scale, and fc2's column
    is divided back), but per-tensor int8 activations on that tensor (onnxruntime quantizes a
    Gemm's output as well as its input) round every other channel to almost nothing: fc1 and
    fc2 are the sensitive layers, fc3 is not.
    """
    import torch

    model = sensitive_mlp_module()
    torch.onnx.export(model, (torch.randn(1, 3, 4, 4),), str(path), input_names=["pixel_values"],
                      output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    return path


def sensitive_mlp_module():
    """``_sensitive_mlp``'s PyTorch module (NCHW 3x4x4 images in, 3 logits out)."""
    import torch

    torch.manual_seed(0)

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3 = torch.nn.Linear(48, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 3)

        def forward(self, x):
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1))))))

    model = MLP().eval()
    with torch.no_grad():
        model.fc1.weight[0] *= 1000
        model.fc1.bias[0] = model.fc1.bias[0].abs() * 1000 + 1000  # always on, always huge
        model.fc2.weight[:, 0] /= 1000
        model.fc3.weight *= 4  # well-separated logits, so agreement is not decided by ties
    return model


def test_a_deliberately_sensitive_layer_is_found_and_kept_float(tmp_path):
    from edgeport.converters.onnx_int8_static import convert_onnx_int8_static, run_onnx

    onnx_path = _sensitive_mlp(tmp_path / "mlp.onnx")
    images = np.random.default_rng(0).standard_normal((128, 3, 4, 4)).astype(np.float32)
    calib, held = split_holdout(len(images))
    holdout = Holdout(images[held], run_onnx(onnx_path, images[held]))
    target = Target(min_agreement=0.97)

    _, plain = convert_onnx_int8_static(onnx_path, tmp_path / "plain.onnx", images[calib], float_nodes=[])
    assert plain["float_nodes"] == [] and not holdout.judge(run_onnx(tmp_path / "plain.onnx", holdout.inputs), target)["passed"]

    _, settings = convert_onnx_int8_static(onnx_path, tmp_path / "searched.onnx", images[calib], holdout=holdout,
                                           target=target, log=lambda m: None)
    search = settings["precision_search"]
    assert search["passed_on_holdout"] and sorted(settings["float_nodes"]) == ["/fc1/Gemm", "/fc2/Gemm"]
    assert settings["int8_nodes"] == 1 and search["rounds"][0]["passed"] is False  # fc3 stays int8
    assert search["raised"][0]["sensitivity"] > 0.2  # measured: fc2 alone takes away 28% of the logit error
    assert holdout.judge(run_onnx(tmp_path / "searched.onnx", holdout.inputs), target)["passed"]
    # and it holds on images the search never saw
    fresh = np.random.default_rng(1).standard_normal((200, 3, 4, 4)).astype(np.float32)
    agreement = np.mean(run_onnx(onnx_path, fresh).argmax(1) == run_onnx(tmp_path / "searched.onnx", fresh).argmax(1))
    assert agreement >= 0.97


def test_layer_sensitivities_side_by_side_equal_one_by_one(tmp_path, monkeypatch):
    """onnx-int8-static ranks a small model's layers on one single-thread session per core: the
    same figures as one session after another, in the same order."""
    import onnx

    from edgeport.converters import onnx_int8_static
    from edgeport.converters.onnx_int8_static import convert_onnx_int8_static, node_sensitivity, run_onnx

    onnx_path = _sensitive_mlp(tmp_path / "mlp.onnx")
    images = np.random.default_rng(0).standard_normal((64, 3, 4, 4)).astype(np.float32)
    calib, held = split_holdout(len(images))
    holdout = Holdout(images[held], run_onnx(onnx_path, images[held]))
    convert_onnx_int8_static(onnx_path, tmp_path / "plain.onnx", images[calib], float_nodes=[])
    units = [["/fc1/Gemm"], ["/fc2/Gemm"], ["/fc3/Gemm"], ["/fc1/Gemm", "/fc3/Gemm"]]
    lanes_of = onnx_int8_static.sensitivity_lanes
    assert lanes_of(2**30) == 1 and lanes_of(2**20) >= 1  # a large model: one session at a time
    figures = {}
    for lanes in (1, 2):
        monkeypatch.setattr(onnx_int8_static, "sensitivity_lanes", lambda size, lanes=lanes: lanes)
        figures[lanes] = node_sensitivity(onnx.load(str(onnx_path)), tmp_path / "plain.onnx", units, holdout)
    np.testing.assert_allclose(figures[2], figures[1], rtol=1e-5, atol=1e-7)
    assert figures[1][1] > 0.2 and figures[1][1] > figures[1][2]  # fc2 matters, fc3 hardly


@pytest.mark.parametrize("variant", ["onnx-int8-static", "tflite-int8", "tflite-int8-io"])
def test_export_records_the_search_judged_on_held_out_calibration_images(searched_tiny, exported_tiny, variant):
    import json

    manifest = json.loads((searched_tiny / "manifest.json").read_text())
    record = next(v for v in manifest["variants"] if v["name"] == variant)
    search = record["settings"]["precision_search"]
    calibration = len(manifest["calibration"]["images"])
    assert search["holdout_images"] == calibration // 2
    assert record["settings"]["calibration_images"] == calibration - calibration // 2
    assert search["target"] == {"min_agreement": 0.97, "max_accuracy_drop": 1.0}  # the config's int8 budget
    assert sum(1 for r in search["rounds"] if r.get("chosen")) == 1
    sibling = next(v for v in manifest["variants"] if v["name"] == "tflite-int8")["settings"]["precision_search"]
    if variant == "tflite-int8-io" and sibling["passed_on_holdout"]:
        # starts from what tflite-int8's search chose, just before it in the same run
        assert search["started_from"] == "tflite-int8's precision search"
        assert search["rounds"][0]["raised"] == len(sibling["raised"])
    else:
        assert search["rounds"][0]["raised"] == 0 and "started_from" not in search
    chosen = next(r for r in search["rounds"] if r.get("chosen"))
    assert chosen["raised"] == len(search["raised"])
    if variant == "onnx-int8-static":
        assert record["settings"]["float_nodes"] == [r["name"] for r in search["raised"]]
    else:
        assert len(record["settings"]["int16_ops"]) == sum(r["ops"] for r in search["raised"])
        assert record["settings"]["activations"] == ("int8+int16" if search["raised"] else "int8")
    # turning the search on redoes the calibrated variants only
    reused = {v["name"] for v in manifest["variants"] if v.get("reused")}
    assert {"onnx-fp32", "tflite-fp32", "savedmodel-fp32"} <= reused and variant not in reused


def test_tflite_int8_io_starts_from_what_tflite_int8_chose(exported_tiny, calib_dir, tmp_path):
    """The hint one full-integer step leaves the other: read back only for the same fp32 file and
    images, only from a search that passed; the -io search's first round raises those op kinds."""
    from edgeport.converters.precision_search import Holdout
    from edgeport.converters.tflite_int8 import FullIntegerHint, convert_tflite_int8, run_tflite
    from edgeport.pipeline import calibration_arrays, list_images
    from edgeport.validation.preprocess import Preprocessing

    fp32 = exported_tiny / "model_fp32.tflite"
    images = calibration_arrays(list_images(calib_dir), Preprocessing.from_file(exported_tiny / "preprocessor_config.json"))
    nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    hint = FullIntegerHint(tmp_path, fp32, nhwc)
    assert hint.read() == []  # tflite-int8 has not run
    hint.write({"passed_on_holdout": True, "raised": [{"name": "ADD"}, {"name": "SOFTMAX"}]})
    assert hint.read() == ["ADD", "SOFTMAX"]
    assert FullIntegerHint(tmp_path, fp32, nhwc[1:]).read() == []  # other images: not this hint
    hint.write({"passed_on_holdout": False, "raised": [{"name": "ADD"}]})
    assert hint.read() == []  # a search that missed is nobody's starting point

    holdout = Holdout(images[:4], run_tflite(fp32, images[:4]))
    settings = convert_tflite_int8(fp32, tmp_path / "io.tflite", nhwc[4:], int8_io=True, holdout=holdout,
                                   target=Target(min_agreement=0.0), log=lambda m: None,
                                   start_kinds=["SOFTMAX", "NOT_AN_OP"], start_from="tflite-int8's precision search")
    search = settings["precision_search"]
    assert search["started_from"] == "tflite-int8's precision search" and len(search["rounds"]) == 1
    assert search["rounds"][0]["raised"] == 1 and [r["name"] for r in search["raised"]] == ["SOFTMAX"]
    assert settings["int16_ops"] and settings["activations"] == "int8+int16"


def test_report_and_bundle_name_the_raised_layers():
    from edgeport.mobile_bundle import which_file
    from edgeport.validation.report import precision_search_lines

    search = {"raised_to": "int16 activations", "candidates": 13, "holdout_images": 256, "passed_on_holdout": True,
              "raised": [{"name": "SOFTMAX", "ops": 6, "sensitivity": 0.352}, {"name": "ADD", "ops": 62, "sensitivity": 0.056}]}
    report = {"variants": [{"name": "tflite-int8", "precision_search": search},
                           {"name": "onnx-int8-static", "precision_search": {**search, "raised_to": "float",
                                                                             "raised": [], "candidates": 50}},
                           {"name": "onnx-int8-static-big", "precision_search": {
                               **search, "raised_to": "float", "candidates": 98,
                               "raised": [{"name": "/l3/MatMul", "sensitivity": 0.2, "measured_with_group_of": 10}]}},
                           {"name": "tflite-fp32"}]}
    lines = precision_search_lines(report)
    assert lines[0].startswith("`tflite-int8`: 2 of 13 op kinds raised to int16 activations, judged on 256 held-out")
    assert "`SOFTMAX` (6 ops) 0.352, `ADD` (62 ops) 0.056" in lines[0] and "in the order raised" in lines[0]
    assert lines[1].startswith("`onnx-int8-static`: 0 of 50 layers raised to float") and "everything int8" in lines[1]
    assert "`/l3/MatMul` 0.200 (its group of 10)" in lines[2]  # ranked only with its group: said so
    assert len(lines) == 3
    npu = [{"variant": "tflite-int8", "file": "model_int8.tflite", "passed_budget": True, "latency_ms_p50": 3.0,
            "compute": {"activations": "int8+int16"}}]
    row = next(r for r in which_file(npu, None) if r["hardware"].startswith("integer-only"))
    assert "int8-only NPU/DSP cannot" in row["why"]
