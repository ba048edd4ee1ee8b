"""The order test files run in: the longest recorded first, each file's tests together (tests/conftest.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conftest import file_weights, longest_files_first


@dataclass
class Item:  # what longest_files_first reads of a pytest item
    nodeid: str


def test_the_longest_files_come_first_and_a_files_tests_keep_their_order() -> None:
    items = [Item("tests/test_a.py::one"), Item("tests/test_a.py::two"), Item("tests/test_b.py::one"),
             Item("tests/test_c.py::one[x]"), Item("tests/test_c.py::one[y]"), Item("tests/test_new.py::one")]
    longest_files_first(items, {"tests/test_a.py": 1.0, "tests/test_b.py": 30.0, "tests/test_c.py": 5.0})
    # test_new.py has no record: it counts as the median file (5 s), after test_c.py by name
    assert [i.nodeid for i in items] == ["tests/test_b.py::one", "tests/test_c.py::one[x]", "tests/test_c.py::one[y]",
                                         "tests/test_new.py::one", "tests/test_a.py::one", "tests/test_a.py::two"]


def test_without_a_record_the_collected_order_stays(tmp_path: Path) -> None:
    items = [Item("tests/test_b.py::one"), Item("tests/test_a.py::one")]
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "words.json").write_text('{"tests/test_a.py": "long"}')
    for path in (tmp_path / "missing.json", tmp_path / "broken.json", tmp_path / "list.json", tmp_path / "words.json"):
        weights = file_weights(path)
        assert weights == {}
        longest_files_first(items, weights)
        assert [i.nodeid for i in items] == ["tests/test_b.py::one", "tests/test_a.py::one"]
