"""docs/cli.md is what the argparse parser gives, and the renderer writes what each argument declares."""
from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path

from edgeport import cli_reference

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "cli.md"


def test_docs_cli_md_matches_the_parser():
    committed, generated = DOC.read_text(), cli_reference.render()
    if committed != generated:
        diff = list(difflib.unified_diff(committed.splitlines(), generated.splitlines(), "docs/cli.md",
                                         "the parser", lineterm=""))
        raise AssertionError("docs/cli.md is out of date; run `make docs` (or `python -m edgeport.cli_reference`)."
                             "\n" + "\n".join(diff[:30]))


def test_every_subcommand_has_its_anchor():
    text = DOC.read_text()
    for sub, _help in cli_reference._subcommands(_edgeport_parser()):
        assert f"\n## {sub.prog}\n" in text and f"(#{sub.prog.replace(' ', '-')})" in text
    assert "(#edgeport-export-all)" in text and str(REPO) not in text  # no path of this machine


def _edgeport_parser() -> argparse.ArgumentParser:
    from edgeport.cli import build_parser

    return build_parser()


def _tiny_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool", description="A tiny tool.")
    parser.add_argument("--version", action="version", version="tool 1.0")
    sub = parser.add_subparsers(metavar="COMMAND")
    p = sub.add_parser("do-it", help="do it to a file", description="Do it to FILE.")
    p.add_argument("file", metavar="FILE", help="the input")
    p.add_argument("--mode", default="fast", help="fast|slow (default %(default)s)")
    p.add_argument("--level", type=int, choices=[1, 2], help="how hard")
    p.add_argument("--sep", default="a|b", help="<separator>")
    p.add_argument("--dry-run", action="store_true", help="change nothing")
    sub.add_parser("other", help="the second command")
    return parser


def test_renderer_on_a_tiny_parser(monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")  # the terminal width must not matter
    text = cli_reference.render(_tiny_parser())
    monkeypatch.setenv("COLUMNS", "300")
    assert cli_reference.render(_tiny_parser()) == text
    assert text.startswith("# tool command-line reference\n") and "`python -m edgeport.cli_reference`" in text
    assert text.index("## tool\n") < text.index("## tool do-it\n") < text.index("## tool other\n")
    assert "| [tool do-it](#tool-do-it) | do it to a file |" in text
    assert "| `--version` |  |  | show program's version number and exit |" in text
    section = text[text.index("## tool do-it"):text.index("## tool other")]
    assert "```text\nDo it to FILE.\n```" in section
    assert "```text\nusage: tool do-it [-h] [--mode MODE] [--level {1,2}] [--sep SEP] [--dry-run] FILE\n```" in section
    assert "| `FILE` |  | required | the input |" in section
    assert r"| `--mode` | `MODE` | `fast` | fast\|slow (default fast) |" in section  # '|' escaped, %(default)s filled
    assert "| `--level` | `{1,2}` |  | how hard |" in section  # no default shown for None
    assert r"| `--sep` | `SEP` | `a\|b` | \<separator> |" in section  # '|' escaped in code, '<' is no HTML tag
    assert "| `--dry-run` |  |  | change nothing |" in section  # nor for a flag's False
    for row in (line for line in text.splitlines() if line.startswith("| ")):
        assert len(re.split(r"(?<!\\)\|", row)) - 2 in (2, 4), row  # every row keeps its columns


def test_check_exits_1_with_a_diff_when_the_file_is_stale(tmp_path, capsys):
    path = tmp_path / "cli.md"
    assert cli_reference.main([str(path)]) == 0
    assert cli_reference.main(["--check", str(path)]) == 0
    path.write_text(path.read_text().replace("## edgeport gate", "## edgeport gait"))
    assert cli_reference.main(["--check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "-## edgeport gait" in out and "+## edgeport gate" in out and "out of date" in out
