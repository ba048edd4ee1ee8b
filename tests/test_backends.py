"""Optional backends (pip extras): a missing one is a sentence with its install command, the
default variant list is what the installed ones can make, and a variant named explicitly whose
backend is missing fails while the others are still made."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from edgeport import backends
from edgeport.variants import DEFAULT_VARIANTS, VARIANTS


REPO = Path(__file__).resolve().parent.parent
GONE = ("onnx2tf", "ai_edge_litert")


@pytest.fixture
def without_tflite(monkeypatch):
    """This installation as if neither `edgeport[tflite]` nor LiteRT were installed (a core or
    [export] install): onnx2tf and ai_edge_litert absent."""
    real = backends.absent
    monkeypatch.setattr(backends, "absent", lambda modules: [m for m in modules if m in GONE]
                        + real(tuple(m for m in modules if m not in GONE)))


def test_every_runtime_but_the_core_has_a_backend_and_every_backend_its_modules():
    runtimes = {spec.runtime for spec in VARIANTS.values()}
    assert runtimes - set(backends.RUNTIME_BACKEND) == {"onnxruntime"}  # the core runs ONNX files
    assert backends.backend_of("torch") == "export"  # the PyTorch reference
    assert set(backends.RUNTIME_BACKEND.values()) <= set(backends.BACKENDS)
    # what runs a runtime's files is named for every runtime the core lacks, and the extra that
    # makes its variants brings it too (a made variant can be validated)
    assert set(backends.RUNTIME_NEEDS) == set(backends.RUNTIME_BACKEND)
    for runtime, needs in backends.RUNTIME_NEEDS.items():
        maker = backends.BACKENDS[backends.RUNTIME_BACKEND[runtime]]
        assert set(needs.modules) <= set(maker.modules), runtime
        assert needs.extra in backends.BACKENDS
    # every backend is an extra of the package, and [all] holds them all
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(backends.BACKENDS) <= set(extras)
    assert extras["all"] == [f"edgeport[{','.join(backends.BACKENDS)}]"]
    # here (the lock installs everything) every backend is installed
    assert all(row["installed"] and not row["missing"] for row in backends.report())


def test_a_missing_backend_names_its_install_command(without_tflite):
    why = backends.missing_backend("tflite")  # running .tflite files: LiteRT, in [serve]
    assert "ai_edge_litert" in why and "pip install 'edgeport[serve]'" in why
    assert "pip install 'edgeport[tflite]'" in why and backends.ONNX2TF_INSTALL in why  # making them
    why = backends.cannot_make("tflite")
    assert "onnx2tf" in why and "pip install 'edgeport[tflite]'" in why
    assert backends.missing_backend("onnxruntime") is None and backends.missing_backend("openvino") is None
    assert backends.cannot_make("openvino") is None


def test_the_default_variants_are_what_the_installed_backends_make(without_tflite, tmp_path, monkeypatch):
    from edgeport.config import load_config
    from edgeport.variants import default_variants

    made = default_variants()
    assert made == [n for n in DEFAULT_VARIANTS if VARIANTS[n].runtime not in ("tflite", "savedmodel")]
    assert "onnx-fp32" in made and "tflite-fp32" not in made
    # a config that names no variants gets the same list; one that names them keeps them
    config = tmp_path / "edgeport.toml"
    config.write_text('[[models]]\nname = "m"\nsource = "models/m"\n')
    assert load_config(config).models[0].variants == made
    config.write_text('[settings]\nvariants = ["onnx-fp32", "tflite-fp32"]\n[[models]]\nname = "m"\nsource = "models/m"\n')
    assert load_config(config).models[0].variants == ["onnx-fp32", "tflite-fp32"]
    # ... and so does a model named on the command line that the config does not hold
    import edgeport.api
    import edgeport.pipeline

    seen = {}
    monkeypatch.setattr(edgeport.pipeline, "export_model", lambda *a, **k: seen.update(k))
    monkeypatch.setattr("edgeport.model_source.resolve_source", lambda *a, **k: None)
    edgeport.api.export("some/folder", out=tmp_path / "o", config=config)
    assert seen["variants"] == ["onnx-fp32", "tflite-fp32"]


def test_a_named_variant_whose_backend_is_missing_fails_and_the_others_are_made(without_tflite, exported_copy,
                                                                                  tiny_vit):
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    result = export_model("tiny-vit", resolve_source(str(tiny_vit)), exported_copy,
                          variants=["onnx-fp32", "onnx-fp16", "tflite-fp32"], images_dir=None, isolate=False)
    records = {v["name"]: v for v in result.manifest["variants"]}
    assert records["onnx-fp32"]["status"] == "ok" and records["onnx-fp16"]["status"] == "ok"
    assert records["tflite-fp32"]["status"] == "failed"
    assert "pip install 'edgeport[tflite]'" in records["tflite-fp32"]["error"]
    assert result.failed == ["tflite-fp32"]


def test_a_runner_whose_backend_is_missing_says_how_to_install_it(without_tflite):
    from edgeport.runtimes import RunnerError, runner_class

    with pytest.raises(RunnerError, match=r"pip install 'edgeport\[serve\]'"):
        runner_class("tflite")
    assert runner_class("onnxruntime").__name__ == "OnnxRuntimeRunner"


def test_backends_command(capsys, without_tflite):
    from edgeport.cli import main

    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "tflite: not installed" in out and "install: pip install 'edgeport[tflite]'" in out
    assert "openvino: installed" in out and "core (always installed)" in out
    runs = next(line for line in out.splitlines() if line.startswith("runs files of:"))
    assert "onnxruntime" in runs and "openvino" in runs and "tflite" not in runs  # LiteRT gone too
    assert main(["backends", "--json"]) == 0
    rows = {row["backend"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["tflite"]["installed"] is False and "tflite-int8" in rows["tflite"]["variants"]
    assert rows["serve"]["installed"] is True and rows["serve"]["variants"] == []
    assert rows["serve-openvino"]["installed"] is True
    assert rows["export"]["variants"] == ["onnx-fp32", "onnx-fp16", "onnx-int8-dynamic", "onnx-int8-static"]


def test_serve_without_the_serve_backend_says_how_to_install_it(monkeypatch, capsys, validated_tiny):
    from edgeport.cli import main

    real = backends.missing_modules
    monkeypatch.setattr(backends, "missing_modules", lambda name: ["fastapi"] if name == "serve" else real(name))
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("started a server without the serve backend"))
    assert main(["serve", str(validated_tiny)]) == 2
    assert "pip install 'edgeport[serve]'" in capsys.readouterr().err


def test_without_the_export_backend_nothing_is_made_or_validated_and_the_message_says_why(monkeypatch, tiny_vit,
                                                                                            exported_copy, faces_dir,
                                                                                            capsys):
    """A core-only install (serving, the gate, edgeport.load) asked to export or validate."""
    from edgeport.config import RunSettings
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model, validate_export
    from edgeport.variants import default_variants

    real = backends.missing_modules
    monkeypatch.setattr(backends, "missing_modules", lambda name: ["torch"] if name == "export" else real(name))
    assert default_variants() == []
    with pytest.raises(ValueError, match=r"pip install 'edgeport\[export\]'"):
        export_model("tiny-vit", resolve_source(str(tiny_vit)), exported_copy, variants=["onnx-fp32"], images_dir=None)
    with pytest.raises(ValueError, match=r"validating .* needs the export backend"):
        validate_export(exported_copy, faces_dir, {}, RunSettings(), progress=False)
    # the CLI: the install command, before the model is read (its config check imports transformers)
    from edgeport.cli import main

    monkeypatch.setattr("edgeport.model_source.check_image_classifier",
                        lambda *a, **k: pytest.fail("read the model without the export backend"))
    assert main(["export", str(tiny_vit), "--out", str(exported_copy.parent / "o")]) == 2
    assert "pip install 'edgeport[export]'" in capsys.readouterr().err


def test_serving_picks_among_the_variants_this_install_can_run(without_tflite, validated_tiny):
    """An install without LiteRT (the core, or [export]): the fastest variant it can run, and a
    named TFLite variant refused with the install command."""
    from edgeport.serving.selection import ServeError, select_variant

    model = select_variant(validated_tiny)
    assert model.runtime == "onnxruntime"
    with pytest.raises(ServeError, match=r"cannot run here: .*ai_edge_litert.*pip install 'edgeport\[serve\]'"):
        select_variant(validated_tiny, "tflite-fp32")


HEAVY = {"torch", "transformers", "tensorflow", "tf_keras", "optimum", "nncf"}


def serve_and_classify(monkeypatch, model_dir: Path, variant: str, image: Path) -> tuple[dict, list, set[str]]:
    """Serve ``variant`` of ``model_dir`` in a real server process, classify ``image``; return its
    /metadata, its answer, and every top-level module the server process imported (read from
    Python's own import log, PYTHONPROFILEIMPORTTIME, in the server's stderr)."""
    import requests

    from conftest import serving

    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    with serving(model_dir, "--variant", variant, "--threads", "1") as (url, _, log):
        metadata = requests.get(f"{url}/metadata", timeout=30).json()
        answer = requests.post(url, data=image.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert answer.status_code == 200, answer.text
        imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                    for line in log.read_text().splitlines() if line.startswith("import time:") and "|" in line}
    assert {"edgeport", "fastapi", "numpy"} <= imported  # the log is read: it names what serving needs
    return metadata, answer.json(), imported


def test_a_tflite_variant_is_served_without_torch_transformers_or_tensorflow(monkeypatch, validated_tiny, faces_dir):
    """What `pip install 'edgeport[serve]'` runs: LiteRT's interpreter, preprocessing from the manifest."""
    image = next((faces_dir / "female").iterdir())
    metadata, answer, imported = serve_and_classify(monkeypatch, validated_tiny, "tflite-fp32", image)
    assert metadata["variant"] == "tflite-fp32" and metadata["runtime"] == "tflite"
    assert {row["label"] for row in answer} == {"female", "male"}
    assert abs(sum(row["score"] for row in answer) - 1) < 1e-5
    assert "ai_edge_litert" in imported and not imported & HEAVY, sorted(imported & HEAVY)
