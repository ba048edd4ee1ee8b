"""Many models, many machines: `export-all --shard K/N` and one `gate` over every shard's reports."""
from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from edgeport.cli import main
from edgeport.shards import find_reports, models_in_shard, parse_shard, shard_of

REPO = Path(__file__).resolve().parent.parent
NAMES = [f"model-{i}" for i in range(40)]


def test_a_model_keeps_its_shard_when_others_are_added_removed_or_reordered():
    for n in (1, 2, 3, 5):
        before = {name: shard_of(name, n) for name in NAMES}
        grown = ["new-model", *reversed(NAMES), "another-one"]
        for k in range(1, n + 1):
            assert [m for m in models_in_shard(grown, k, n) if m in before] == \
                   [m for m in reversed(NAMES) if before[m] == k]
            assert models_in_shard(NAMES[5:], k, n) == [m for m in NAMES[5:] if before[m] == k]  # removed


def test_every_model_is_in_exactly_one_shard():
    for n in (1, 2, 3, 4, 7):
        shards = [models_in_shard(NAMES, k, n) for k in range(1, n + 1)]
        assert sorted(m for shard in shards for m in shard) == sorted(NAMES)
        assert sum(len(s) for s in shards) == len(NAMES)
        if n <= 4:  # 40 names: not balanced, but no runner sits idle either
            assert all(shards)


def test_shards_are_pinned_across_versions_and_processes():
    """A changed hash would move every model to another runner: keep it, or say so in the changelog."""
    assert [shard_of(m, 2) for m in ("gender-vit", "emotion-vit", "gender-classification")] == [1, 1, 2]
    assert [shard_of(m, 4) for m in ("gender-vit", "emotion-vit", "gender-classification")] == [1, 4, 2]
    assert models_in_shard(["a", "b"], 1, 1) == ["a", "b"]


@pytest.mark.parametrize("text, message", [
    ("0/2", "K must be between 1 and N"), ("3/2", "K must be between 1 and N"), ("1/0", "K must be between 1"),
    ("a/b", "expected K/N"), ("2", "expected K/N"), ("1/2/3", "expected K/N"), ("-1/2", "expected K/N"),
])
def test_parse_shard_errors_name_the_flag_and_the_fix(text, message):
    with pytest.raises(ValueError, match=message) as exc:
        parse_shard(text)
    assert f"--shard {text!r}" in str(exc.value) and "--shard 1/" in str(exc.value)


def test_parse_shard():
    assert parse_shard("1/1") == (1, 1) and parse_shard("2/4") == (2, 4) and parse_shard(" 3 / 4 ") == (3, 4)


# --- export-all --shard, with the export and validation recorded instead of run -------------------------

def _config(tmp_path: Path, names: list[str]) -> Path:
    """A config of ``names``, each the bundled gender model on the test faces (inputs are checked, not run)."""
    models = "".join(f'[[models]]\nname = "{n}"\nsource = "{REPO / "models" / "gender-vit"}"\n'
                     f'eval = "{REPO / "tests" / "data" / "faces"}"\n' for n in names)
    path = tmp_path / "c.toml"
    path.write_text(f'[settings]\nartifacts = "{tmp_path / "arts"}"\n{models}')
    return path


@pytest.fixture
def exported(monkeypatch) -> list[str]:
    """The model names export-all exports, in order (nothing is converted)."""
    import edgeport.pipeline

    calls: list[str] = []

    def export_model(name, source, out, **kwargs):
        calls.append(name)
        return types.SimpleNamespace(failed=[])

    def validate_export(out, eval_dir, budgets, settings, **kwargs):
        return {"passed": True, "eval_set": {"images": 8, "skipped": 0}}

    monkeypatch.setattr(edgeport.pipeline, "export_model", export_model)
    monkeypatch.setattr(edgeport.pipeline, "validate_export", validate_export)
    return calls


def test_export_all_shard_exports_its_models_and_says_which(tmp_path, exported, capsys):
    names = ["gender-vit", "emotion-vit", "gender-classification", "facial-emotions", "age-vit"]
    cfg = str(_config(tmp_path, names))
    for k in (1, 2, 3):
        exported.clear()
        assert main(["export-all", "--config", cfg, "--no-progress", "--shard", f"{k}/3"]) == 0
        assert exported == models_in_shard(names, k, 3)
        out = capsys.readouterr().out
        assert exported and f"shard {k}/3 takes {len(exported)} model(s): {', '.join(exported)}" in out
    exported.clear()
    assert main(["export-all", "--config", cfg, "--no-progress", "--shard", "2/2"]) == 0
    assert exported == ["gender-classification"]  # the one of the five in shard 2 of 2
    exported.clear()  # --only and --shard: the models in both
    assert main(["export-all", "--config", cfg, "--no-progress", "--shard", "1/2",
                 "--only", "gender-classification", "--only", "emotion-vit"]) == 0
    assert exported == ["emotion-vit"]


def test_an_empty_shard_exits_0_and_says_so(tmp_path, exported, capsys):
    cfg = str(_config(tmp_path, ["gender-vit"]))
    assert main(["export-all", "--config", cfg, "--no-progress", "--shard", "2/2"]) == 0
    assert exported == []
    assert "shard 2/2 takes none of the 1 model(s); nothing to do" in capsys.readouterr().out
    # so is a shard that --only leaves empty; an --only that names no model stays an error
    cfg = str(_config(tmp_path, ["gender-vit", "gender-classification"]))
    assert main(["export-all", "--config", cfg, "--no-progress", "--shard", "2/2", "--only", "gender-vit"]) == 0
    assert main(["export-all", "--config", cfg, "--no-progress", "--shard", "2/2", "--only", "nope"]) == 2
    assert exported == []


@pytest.mark.parametrize("shard", ["0/2", "3/2", "a/b", "2"])
def test_a_bad_shard_exits_2_before_any_work(tmp_path, exported, capsys, shard):
    cfg = str(_config(tmp_path, ["gender-vit"]))
    assert main(["export-all", "--config", cfg, "--no-progress", "--shard", shard]) == 2
    err = capsys.readouterr().err
    assert f"edgeport: error: --shard {shard!r}" in err and exported == []


# --- gate over the downloaded reports of every shard ------------------------------------------------------

def _report(model: str, failing: str | None = None) -> dict:
    """The fields `edgeport gate` reads; ``failing`` names a variant that missed its budget."""
    variants = [{"name": n, "accuracy": 0.9, "agreement": 1.0, "passed": n != failing, "error": None,
                 "failures": [{"metric": "agreement", "message": "agreement 90.00% < 97.00%"}] if n == failing else []}
                for n in ("onnx-fp32", "tflite-int8")]
    return {"model": model, "variants": variants, "eval_set": {"images": 100, "skipped": 0}}


def _write(root: Path, shard: int, model: str, failing: str | None = None) -> Path:
    """One model's files as actions/download-artifact lays them out, with the bundle beside the report."""
    folder = root / f"edgeport-reports-{shard}" / model
    (folder / "mobile").mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(_report(model, failing)))
    (folder / "mobile" / "model.json").write_text("{}")
    return folder / "report.json"


@pytest.fixture
def gate_config(tmp_path) -> str:
    path = tmp_path / "gate.toml"
    path.write_text('[[models]]\nname = "a"\nsource = "x"\n[[models]]\nname = "b"\nsource = "x"\n'
                    '[[models]]\nname = "c"\nsource = "x"\n')
    return str(path)


def test_gate_over_shard_folders_one_verdict(tmp_path, gate_config, capsys):
    root = tmp_path / "shard-reports"
    for shard, model in ((1, "a"), (1, "c"), (2, "b")):
        _write(root, shard, model)
    assert find_reports(root) == [root / "edgeport-reports-1" / "a" / "report.json",
                                  root / "edgeport-reports-1" / "c" / "report.json",
                                  root / "edgeport-reports-2" / "b" / "report.json"]
    assert main(["gate", str(root), "--config", gate_config]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "gate: 3 report(s), 0 failed"
    # each shard's folder named on its own, or the folders of a downloaded artifact: the same verdict
    assert main(["gate", str(root / "edgeport-reports-1"), str(root / "edgeport-reports-2"),
                 "--config", gate_config]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "gate: 3 report(s), 0 failed"

    for shard, model in ((1, "a"), (1, "c"), (2, "b")):
        _write(tmp_path / "shard-reports-2", shard, model, failing="tflite-int8" if model == "b" else None)
    assert main(["gate", str(tmp_path / "shard-reports-2"), "--config", gate_config]) == 1
    out = capsys.readouterr().out
    assert "FAIL b/tflite-int8: agreement 90.00% < 97.00%" in out
    assert out.splitlines()[-1] == "gate: 3 report(s), 1 failed"


def test_a_configured_model_without_a_report_fails_the_gate(tmp_path, gate_config, capsys):
    root = tmp_path / "shard-reports"
    _write(root, 1, "a")
    _write(root, 2, "b")  # the shard that held c crashed before writing anything
    assert main(["gate", str(root), "--config", gate_config]) == 1
    out = capsys.readouterr().out
    assert "FAIL c: no report found (was its shard run?)" in out
    assert out.splitlines()[-1] == "gate: 2 report(s), 0 failed, 1 configured model(s) without a report"
    assert main(["gate", str(root), "--config", gate_config, "--no-expect-config"]) == 0
    # report files or model folders named one by one: only those are gated, unless asked
    one = str(root / "edgeport-reports-1" / "a")
    assert main(["gate", one, "--config", gate_config]) == 0
    assert main(["gate", one, "--config", gate_config, "--expect-config"]) == 1
    assert "FAIL b: no report found" in capsys.readouterr().out


def test_the_same_model_in_two_shards_is_refused(tmp_path, gate_config, capsys):
    root = tmp_path / "shard-reports"
    first, second = _write(root, 1, "a"), _write(root, 2, "a")
    _write(root, 1, "b")
    _write(root, 2, "c")
    assert main(["gate", str(root), "--config", gate_config]) == 2
    err = capsys.readouterr().err
    assert "did two shards export it?" in err and f"model 'a' is in 2 reports: {first}, {second}" in err
    # the same file named twice is one report, not a duplicate
    assert main(["gate", str(root / "edgeport-reports-1"), str(first), "--config", gate_config,
                 "--no-expect-config"]) == 0


def test_a_folder_without_reports_is_refused(tmp_path, gate_config, capsys):
    (tmp_path / "shard-reports" / "edgeport-reports-1" / "a" / "mobile").mkdir(parents=True)
    assert main(["gate", str(tmp_path / "shard-reports"), "--config", gate_config]) == 2
    assert f"no report.json in {tmp_path / 'shard-reports'} or below it" in capsys.readouterr().err
    assert main(["gate", str(tmp_path / "not-downloaded"), "--config", gate_config]) == 2
