"""Shared fixtures: a small random ViT, exported once per test session, and real face images; and the
order test files run in (the longest first, from ``tests/durations.json``)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent

# Seconds each test file took in a full run (its tests' setup, call and teardown), read to start
# the longest files first. `make test` runs whole files on two workers (pytest-xdist, loadfile),
# each worker taking the next file when it runs out: with pytest-xdist's own order (files with
# the most tests first) a 40 s file started last and one worker idled for a minute at the end
# (docs/decisions/development-test-suite-time.md). Written by a run with EDGEPORT_RECORD_DURATIONS
# set: the files it ran are updated, the others kept. A stale or missing figure only changes the order.
DURATIONS = REPO / "tests" / "durations.json"
RECORD_DURATIONS = "EDGEPORT_RECORD_DURATIONS"
_ran: defaultdict[str, float] = defaultdict(float)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def file_weights(path: Path = DURATIONS) -> dict[str, float]:
    """The recorded seconds per test file (empty when there is no readable record)."""
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):  # unreadable, not JSON, not {file: seconds}
        return {}


def longest_files_first(items: list[pytest.Item], weights: dict[str, float]) -> None:
    """Sort ``items`` so that the files recorded as longest come first; a file's tests stay together
    and in their order; a file with no record counts as the median one."""
    if not weights:
        return
    unknown = statistics.median(weights.values())
    items.sort(key=lambda item: (-weights.get(_file_of(item.nodeid), unknown), _file_of(item.nodeid)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # pyproject.toml's --no-loadscope-reorder keeps pytest-xdist from reordering files by test count
    longest_files_first(items, file_weights())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get(RECORD_DURATIONS):
        _ran[_file_of(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # the controller writes (under pytest-xdist each worker's reports reach it too)
    if not os.environ.get(RECORD_DURATIONS) or os.environ.get("PYTEST_XDIST_WORKER") or not _ran:
        return
    weights = {**file_weights(), **{f: round(s, 1) for f, s in _ran.items()}}
    DURATIONS.write_text(json.dumps(dict(sorted(weights.items())), indent=1) + "\n")


FACES = REPO / "tests" / "data" / "faces"
CALIB = REPO / "tests" / "data" / "calib"
ALL_VARIANTS = ["onnx-fp32", "onnx-fp16", "onnx-int8-dynamic", "onnx-int8-static", "savedmodel-fp32",
                "tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8", "tflite-int8-io"]


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """8 real UTKFace crops in class folders female/ and male/ (see tests/data/README.md)."""
    return FACES


@pytest.fixture(scope="session")
def calib_dir() -> Path:
    """8 other real UTKFace crops, disjoint from faces_dir, for int8 calibration."""
    return CALIB


def shared_folder(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder made by ``build(folder)`` once per test run, whichever test asks first.

    Under pytest-xdist (``make test`` runs two workers) each worker has its own session, so a
    session fixture would be built once per worker: the folder is made under the run's shared
    temporary folder instead, under a file lock, and a worker that finds it finished reuses it.
    Read-only for the tests, like every session fixture here.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():  # not made yet, or a worker failed part-way: make it again
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory) -> Path:
    """A 32x32, 2-layer ViTForImageClassification with random weights (labels female, male)."""
    from edgeport.random_model import make_random_vit

    return shared_folder(tmp_path_factory, "models", lambda d: make_random_vit(d / "tiny-vit")) / "tiny-vit"


@pytest.fixture(scope="session")
def exported_tiny(tiny_vit, faces_dir, calib_dir, tmp_path_factory) -> Path:
    """tiny_vit exported to every variant (done once; tests copy it before changing it)."""
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    def build(folder: Path) -> None:
        # in this process: a step's own process would import torch or TensorFlow again for a
        # 32x32 model (tests/test_resume.py and test_cli.py export with a process per step)
        result = export_model("tiny-vit", resolve_source(str(tiny_vit)), folder / "tiny-vit",
                              variants=ALL_VARIANTS, images_dir=None, calibration_dir=calib_dir,
                              eval_dir=faces_dir, precision_search=False, isolate=False)
        assert result.failed == [], result.manifest

    return shared_folder(tmp_path_factory, "export", build) / "tiny-vit"


@pytest.fixture(scope="session")
def searched_tiny(exported_tiny, tiny_vit, faces_dir, calib_dir, tmp_path_factory) -> Path:
    """exported_tiny's calibrated int8 variants made again with the precision search (the default).

    exported_tiny turns the search off, so that what the other tests check of the int8 files
    does not depend on what a random model's 4 held-out images let the search raise.
    """
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    def build(folder: Path) -> None:
        shutil.copytree(exported_tiny, folder / "tiny-vit")
        result = export_model("tiny-vit", resolve_source(str(tiny_vit)), folder / "tiny-vit", variants=ALL_VARIANTS,
                              images_dir=None, calibration_dir=calib_dir, eval_dir=faces_dir, isolate=False)
        assert result.failed == [], result.manifest

    return shared_folder(tmp_path_factory, "searched", build) / "tiny-vit"


@pytest.fixture
def exported_copy(exported_tiny, tmp_path) -> Path:
    """A private copy of the exported folder, safe to modify."""
    dst = tmp_path / "tiny-vit"
    shutil.copytree(exported_tiny, dst)
    return dst


@pytest.fixture(scope="session")
def validated_tiny(exported_tiny, faces_dir, tmp_path_factory) -> Path:
    """A copy of exported_tiny validated once on faces_dir (report.*, mobile/); do not modify.

    Its config relaxes the int8 budgets: a random-weight model cannot track the reference in
    int8, and these tests are about what the validation writes, not about int8 accuracy.
    """
    from edgeport.cli import main

    def build(folder: Path) -> None:
        dst = folder / "tiny-vit"
        shutil.copytree(exported_tiny, dst)
        cfg = folder / "lenient.toml"
        cfg.write_text("[budgets.int8]\nmin_agreement = 0.0\nmax_accuracy_drop = 100.0\n")
        code = main(["validate", str(dst), "--eval", str(faces_dir), "--no-progress", "--config", str(cfg),
                     "--latency-runs", "3"])
        assert code == 0

    return shared_folder(tmp_path_factory, "validated", build) / "tiny-vit"


@contextlib.contextmanager
def serving(model_dir: Path, *args: str, timeout: float = 90.0,
            cores: set[int] | None = None) -> Iterator[tuple[str, object, Path]]:
    """``edgeport serve MODEL_DIR ARGS`` in its own process (bench-serve's launcher; ``cores``: pinned
    to them); yields (base URL, process, path of its log: stdout and stderr)."""
    from edgeport.bench_serve import free_port, server_process

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "edgeport", "serve", str(model_dir), "--port", str(port), *args]
    with tempfile.TemporaryDirectory(prefix="edgeport-serve-test-") as tmp:
        log = Path(tmp) / "serve.log"
        with server_process(command, log, url, ready_timeout_s=timeout, cores=cores) as proc:
            yield url, proc, log


def metric_value(text: str, name: str) -> float:
    """A sample's value in Prometheus text (``name`` with its labels, if any); 0 when absent."""
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0
