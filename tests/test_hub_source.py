"""The hub code path, offline: a Hugging Face cache layout under a temporary HF_HOME.

The model is exported by id and pinned revision with HF_HUB_OFFLINE=1, exactly as from the
Hub on a machine that has it cached; it has no image folder, so the float TFLite and
SavedModel files get onnx2tf's generated sample and only the calibrated variant fails,
naming the folder to set. Runs the CLI in a subprocess: huggingface_hub reads HF_HOME once,
when it is imported.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest


REPO_ID = "acme/tiny-vit"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_home(tiny_vit, tmp_path):
    home = tmp_path / "hf"
    repo = home / "hub" / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copyfile(tiny_vit / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return home


def _edgeport(hf_home, tmp_path, *args, env: dict[str, str] | None = None, timeout: float = 600):
    env = env or dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", USE_TF="0")
    config = tmp_path / "empty.toml"
    config.write_text("")
    return subprocess.run([sys.executable, "-m", "edgeport.cli", *args, "--config", str(config)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def test_an_export_by_id_reads_the_pinned_snapshot_and_never_the_hub(hf_home, tmp_path):
    """Without HF_HUB_OFFLINE, on a machine where the Hub refuses every connection, an export by
    id and revision reads the cached snapshot and asks the Hub for nothing: optimum's exporter,
    given the id, loaded the processors from ``main`` and retried for minutes."""
    with socket.socket() as s:  # a port nothing listens on: every request is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=f"http://127.0.0.1:{port}", USE_TF="0")
    out = tmp_path / "out"
    run = _edgeport(hf_home, tmp_path, "export", REPO_ID, "--revision", REVISION, "--out", str(out),
                    "--variants", "onnx-fp32", "--no-progress", env=env, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Retrying" not in run.stderr and f"127.0.0.1:{port}" not in run.stderr, run.stderr[-3000:]
    source = json.loads((out / "manifest.json").read_text())["source"]
    assert source["id"] == REPO_ID and source["revision"] == REVISION and len(source["weights_sha256"]) == 64


def test_export_by_id_and_revision_from_the_cache_without_images(hf_home, faces_dir, tmp_path):
    out = tmp_path / "out"
    run = _edgeport(hf_home, tmp_path, "export", REPO_ID, "--revision", REVISION, "--out", str(out),
                    "--variants", "onnx-fp32,tflite-fp32,onnx-int8-static", "--no-progress")
    assert run.returncode == 1, run.stdout + run.stderr  # the one calibrated variant, nothing else
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["id"] == REPO_ID and manifest["source"]["revision"] == REVISION
    assert len(manifest["source"]["weights_sha256"]) == 64
    status = {v["name"]: v for v in manifest["variants"]}
    assert [n for n, v in status.items() if v["status"] == "ok"] == ["onnx-fp32", "tflite-fp32"]
    assert "--calibration DIR" in status["onnx-int8-static"]["error"]
    assert manifest["sample_images"].startswith("generated")
    assert "still running" not in run.stdout

    check = _edgeport(hf_home, tmp_path, "validate", str(out), "--eval", str(faces_dir), "--no-progress",
                      "--latency-runs", "2")
    report = json.loads((out / "report.json").read_text())
    assert report["reference"]["path"] == REPO_ID, check.stdout + check.stderr
    passed = {v["name"]: v["passed"] for v in report["variants"]}
    assert passed == {"onnx-fp32": True, "tflite-fp32": True, "onnx-int8-static": False}
    assert str(tmp_path) not in (out / "report.json").read_text()


@pytest.mark.parametrize("removed, fix", [("model.safetensors", "huggingface-cli download"),
                                           ("preprocessor_config.json", "save_pretrained()")])
def test_a_cached_snapshot_missing_a_file_fails_before_writing(hf_home, tmp_path, monkeypatch, removed, fix):
    """A snapshot in the cache with its config but not its weights, or not its image processor
    config (snapshot_download skips what the repository lacks): the error names the file and the
    fix, and nothing is written, rather than huggingface_hub's lookup error at the step that reads
    it. In process (the cache folder is read from huggingface_hub's constants at each call),
    offline as the suite runs."""
    from huggingface_hub import constants

    from edgeport.model_source import ModelSourceError, resolve_source
    from edgeport.pipeline import export_model

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    (hf_home / "hub" / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / REVISION / removed).unlink()
    source = resolve_source(REPO_ID, REVISION)  # its config is there: the id and revision are fine
    with pytest.raises(ModelSourceError) as caught:
        export_model("tiny", source, tmp_path / "o", variants=["onnx-fp32"], images_dir=None, calibration_dir=None,
                     eval_dir=None, progress=False, isolate=False)
    assert f"'{REPO_ID}' at revision '{REVISION}' has no {removed}" in str(caught.value)
    assert fix in str(caught.value)
    assert not (tmp_path / "o").exists()


def test_a_sharded_hub_snapshot_exports_and_a_missing_shard_is_named(tiny_vit, tmp_path, monkeypatch):
    """A checkpoint saved in shards, by id from the cache: exported with every shard recorded; with
    one shard missing from the cache, the error names it and nothing is written."""
    from huggingface_hub import constants
    from transformers import AutoModelForImageClassification

    from edgeport.model_source import ModelSourceError, resolve_source
    from edgeport.pipeline import export_model

    hub = tmp_path / "hf" / "hub"
    repo = hub / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    AutoModelForImageClassification.from_pretrained(str(tiny_vit)).save_pretrained(
        snapshot, safe_serialization=True, max_shard_size="30KB")
    shutil.copyfile(tiny_vit / "preprocessor_config.json", snapshot / "preprocessor_config.json")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    shards = sorted(p.name for p in snapshot.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and not (snapshot / "model.safetensors").exists()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    result = export_model("tiny", resolve_source(REPO_ID, REVISION), tmp_path / "out", variants=["onnx-fp32"],
                          images_dir=None, progress=False, isolate=False)
    assert result.failed == []
    source = json.loads((tmp_path / "out" / "manifest.json").read_text())["source"]
    assert source["id"] == REPO_ID and [s["file"] for s in source["weights_shards"]] == shards

    (snapshot / shards[1]).unlink()
    with pytest.raises(ModelSourceError) as caught:
        export_model("tiny", resolve_source(REPO_ID, REVISION), tmp_path / "o", variants=["onnx-fp32"],
                     images_dir=None, progress=False, isolate=False)
    assert f"names 1 shard(s) that are not in {snapshot}: {shards[1]}" in str(caught.value)
    assert not (tmp_path / "o").exists()


def test_unknown_revision_fails_with_a_clear_error(hf_home, tmp_path):
    run = _edgeport(hf_home, tmp_path, "export", REPO_ID, "--revision", "deadbeef", "--out", str(tmp_path / "o"))
    assert run.returncode == 2
    assert "'acme/tiny-vit' at revision 'deadbeef' is not in the local Hugging Face cache" in run.stderr
    assert "HF_HUB_OFFLINE" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "o").exists()


def test_a_revision_neither_cached_nor_reachable_names_the_cache_and_the_fix(tmp_path, monkeypatch):
    """Online mode with the Hub out of reach (huggingface_hub gives up after its retries, about
    23 s here, and has no cached copy): the error names the cache folder looked in, the download
    command, and HF_HUB_OFFLINE=1 for a machine without network."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from edgeport.model_source import ModelSourceError, resolve_source

    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we "
                                      "cannot find the requested files in the local cache.")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(ModelSourceError) as caught:
        resolve_source(REPO_ID, REVISION)
    message = str(caught.value)
    snapshot = tmp_path / "hub" / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / REVISION
    assert f"is not in the local Hugging Face cache ({snapshot} not found)" in message
    assert "could not be reached" in message and "set HF_HUB_OFFLINE=1" in message
    assert f"huggingface-cli download {REPO_ID} --revision {REVISION}" in message


def test_distill_a_hub_teacher_by_id_and_revision(hf_home, calib_dir, tmp_path):
    """edgeport distill takes a hub id with its pinned revision, from the cache, offline."""
    out = tmp_path / "student"
    run = _edgeport(hf_home, tmp_path, "distill", REPO_ID, "--revision", REVISION, "--images", str(calib_dir),
                    "--out", str(out), "--max-steps", "4", "--latency-variants", "none", "--cache",
                    str(tmp_path / "cache"), "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr  # no evaluation set: not judged
    assert "not judged" in run.stdout
    report = json.loads((out / "distill.json").read_text())
    assert report["teacher"]["source"]["id"] == REPO_ID and report["teacher"]["source"]["revision"] == REVISION
    assert len(report["teacher"]["source"]["weights_sha256"]) == 64
    assert report["training"]["steps"] == 4 and not report["judged"]
