"""Which onnx2tf backend's tflite-fp32 file is kept (converters/tflite_fp32.py): the first whose
file matches its ONNX source within PREFER_BELOW; above it (SigLIP's flatbuffer_direct file, 6.5e-5
on random inputs and 5.5e-4 on real faces), the closer of the two backends' files."""
from __future__ import annotations

import pytest

from edgeport.converters import tflite_fp32
from edgeport.converters.onnx2tf_tool import ConversionError


@pytest.fixture
def backends(monkeypatch, tmp_path):
    """Fake backends: each writes its name into the file and reports the diff it is given."""
    outcome: dict[str, float | Exception] = {}

    def convert_with(backend, onnx_path, out_path, sample_images, work):
        result = outcome[backend]
        if isinstance(result, Exception):
            raise result
        out_path.write_text(backend)
        return {"onnx_max_abs_diff": result}

    monkeypatch.setattr(tflite_fp32, "_convert_with", convert_with)
    out = tmp_path / "model_fp32.tflite"

    def run(**diffs) -> tuple[dict, str]:
        outcome.update(diffs)
        settings = tflite_fp32.convert_tflite_fp32(tmp_path / "m.onnx", out, sample_images=[], work_dir=tmp_path)
        return settings, out.read_text()

    return run


def test_a_close_first_file_is_kept_without_trying_the_other(backends):
    settings, written = backends(flatbuffer_direct=2e-6, tf_converter=ConversionError("must not run"))
    assert written == "flatbuffer_direct" and settings["backend"] == "onnx2tf flatbuffer_direct"


def test_a_file_above_prefer_below_gives_way_to_a_closer_one(backends):
    settings, written = backends(flatbuffer_direct=6.5e-5, tf_converter=3.6e-7)
    assert written == "tf_converter" and settings["onnx_max_abs_diff"] == 3.6e-7
    assert "differs from the ONNX model by 6.5e-05, above 1e-05" in settings["fallback_reason"]


def test_the_first_file_stays_when_the_other_is_no_closer_or_fails(backends):
    settings, written = backends(flatbuffer_direct=6.5e-5, tf_converter=9e-5)
    assert written == "flatbuffer_direct" and settings["closer_than"].startswith("onnx2tf tf_converter")
    settings, written = backends(flatbuffer_direct=6.5e-5, tf_converter=ConversionError("boom"))
    assert written == "flatbuffer_direct" and "boom" in settings["closer_than"]
