"""The documentation and the code in step: links, anchors, code blocks and `edgeport` command lines.

Checked pages: README.md and every docs/**/*.md. docs/compatibility.md (`make matrix`) and docs/cli.md (generated
from the argparse parser) are generated: only their links are checked.

Conventions the pages follow (each one is a check below):

- Links are relative (`[text](validating.md#the-report)`, `[code](../serving/app.py)`) and point to a
  file or folder that git tracks or would track (not an ignored one such as artifacts/NAME/).
  An anchor is GitHub's anchor of a heading in the target (`## The report: report.json` ->
  `#the-report-reportjson`; a repeated heading gets `-1`, `-2`, ...), or `#L10` / `#L10-L20` in a
  file that is not Markdown. http(s) links are not fetched, only checked for form.
- Every fenced block tagged `sh`, `bash`, `shell` or `python` is run from the repository root,
  unless the line right before its opening fence is `<!-- not run: REASON -->`. sh blocks run under
  `bash -e`, python blocks with this interpreter; the environment has the interpreter's folder
  (.venv/bin) first on PATH and USE_TF=0, HF_HUB_OFFLINE=1, TF_CPP_MIN_LOG_LEVEL=2, and TMPDIR a
  folder of the block's own, removed after it (`mktemp -d` stands for a user's folder). A block must
  exit 0 within BLOCK_TIMEOUT_S, stop whatever it started, and leave `git status` (ignored paths
  included) as it found it; over SLOW_BLOCK_S it passes with a warning. A run sh block never calls
  make, pip install, pytest, docker, kubectl, helm or apt (minutes, network, or outside the
  repository: mark it). A block that is not run is still parsed (`bash -n`, `ast.parse`). Blocks
  carry no prompts (`$ `, `>>>`); output goes in a ```text block or in comments.
- A marker stands on the line right before the fence (no blank line), with a non-empty reason,
  and only before sh/python blocks.
- Every `edgeport ...` command line, in sh blocks (run or not) and in inline code spans of the
  prose, names a subcommand of `edgeport.cli.build_parser()` and only options that subcommand
  knows. Placeholders are written in CAPS (`edgeport export MODEL --out DIR`, `edgeport COMMAND
  --help`), `...` stands for more (`--subgroup-...` for every option with that prefix), and
  `[--opt VALUE]` marks an optional part. A quoted error message (`edgeport serve: error: ...`) is
  not a command line.

When other processes edit the repository while blocks run (pages being written), the
"changed the repository" check reports their files too: run again when they are done.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import html
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Pages whose links alone are checked: they are written by a command, not by hand.
GENERATED = {"docs/compatibility.md", "docs/cli.md"}
SH_LANGS = {"sh", "bash", "shell"}
PYTHON_LANGS = {"python", "py", "python3"}
BLOCK_TIMEOUT_S = 60.0
#: A run block slower than this passes with a warning: the pages mark blocks over ~5 s as not run.
SLOW_BLOCK_S = 10.0
BLOCK_ENV = {"USE_TF": "0", "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
             # the venv's files are compiled already; a block must not leave __pycache__/ in the repository
             "PYTHONDONTWRITEBYTECODE": "1"}

FENCE_RE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
#: The marker that keeps a block from running: the line right before its opening fence.
MARKER_RE = re.compile(r"^\s*<!-- not run: (?P<reason>\S.*?)\s*-->\s*$")
#: Any comment that looks like a "not run" marker, well-formed or not.
LOOSE_MARKER_RE = re.compile(r"^\s*<!--\s*not[\s_-]*run\b.*-->\s*$", re.IGNORECASE)
ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
HTML_ANCHOR_RE = re.compile(r"<a\b[^>]*\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HTML_LINK_RE = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)
REF_DEF_RE = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^>]*>|\S+)", re.MULTILINE)
LINE_ANCHOR_RE = re.compile(r"L\d+(?:C\d+)?(?:-L\d+(?:C\d+)?)?")
PLACEHOLDER_RE = re.compile(r"[A-Z][A-Z0-9_]*")
ENV_ASSIGN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")
HEREDOC_RE = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
#: Words that may stand before the command itself (`time edgeport ...`, `sudo env X=1 edgeport ...`).
WRAPPERS = {"time", "timeout", "sudo", "nohup", "exec", "command", "env", "!",
            "then", "do", "else", "if", "while", "until"}
SHELL_SEPARATORS = set(";&|()<>")
#: Commands a run block may not call (see refused_command).
REFUSED_COMMANDS = {"make", "pytest", "docker", "kubectl", "helm", "apt-get", "apt", "brew"}
#: Set in the blocks' environment: a docs test started by a block does not run blocks again.
NESTED_ENV = "EDGEPORT_DOCS_TEST_NESTED"


# ---------------------------------------------------------------------------------------------
# Reading the pages


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of a page."""

    page: str  #: the page, relative to the repository, e.g. "docs/serving.md"
    line: int  #: 1-based line of the opening fence
    lang: str  #: the info string's first word, lowercased ("" when untagged)
    code: str  #: the content, dedented by the fence's indentation
    skip_reason: str | None  #: the "not run" marker's reason; None when the block runs

    @property
    def id(self) -> str:
        """The block's test id: page:line."""
        return f"{self.page}:{self.line}"

    @property
    def runs(self) -> bool:
        """Whether the docs test executes this block (a tagged sh/python block without a marker)."""
        return self.lang in SH_LANGS | PYTHON_LANGS and self.skip_reason is None


@dataclass
class Page:
    """A Markdown page: its lines, its code blocks, and its prose with code and comments masked."""

    rel: str  #: path relative to the repository, POSIX separators
    lines: list[str]
    blocks: list[CodeBlock] = field(default_factory=list)
    #: the text with fenced blocks, HTML comments and inline code spans blanked (newlines kept, so
    #: an offset still maps to the same line)
    prose: str = ""
    #: (line, content) of each inline code span, whitespace collapsed
    spans: list[tuple[int, str]] = field(default_factory=list)
    #: structural problems found while reading (misplaced markers, unclosed fences)
    problems: list[str] = field(default_factory=list)

    @property
    def generated(self) -> bool:
        """Whether the page is written by a command (links checked, code blocks and commands not)."""
        return self.rel in GENERATED

    def line_of(self, offset: int) -> int:
        """1-based line number of a character offset into prose."""
        return self.prose.count("\n", 0, offset) + 1


def _blank(text: str) -> str:
    """text with every character but newlines replaced by a space (keeps offsets and lines)."""
    return re.sub(r"[^\n]", " ", text)


def _mask_code_spans(text: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Blank CommonMark inline code spans in text; return the new text and (start, end, content) of each.

    A span opens with a run of N backticks and closes at the next run of exactly N backticks,
    within one paragraph; an opening run without its closing run is literal text.
    """
    out, spans, pos = [], [], 0
    for m in re.finditer(r"`+", text):
        if m.start() < pos:
            continue
        ticks = m.group()
        close = re.compile(r"(?<!`)" + ticks + r"(?!`)")
        c = close.search(text, m.end())
        if not c or re.search(r"\n[ \t]*\n", text[m.end():c.start()]):
            continue
        out.append(text[pos:m.start()])
        out.append(_blank(text[m.start():c.end()]))
        spans.append((m.start(), c.end(), text[m.end():c.start()]))
        pos = c.end()
    out.append(text[pos:])
    return "".join(out), spans


def read_page(path: Path) -> Page:
    """Read the Markdown page at path (inside the repository)."""
    return parse_page(path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8"))


def parse_page(rel: str, text: str) -> Page:
    """Parse a page's text: its fenced blocks (with their "not run" markers) and its masked prose."""
    lines = text.split("\n")
    page = Page(rel, lines)
    prose_lines = list(lines)
    pending: tuple[int, str] | None = None  # the last marker: (line index, reason)

    def orphan() -> None:
        assert pending is not None
        page.problems.append(f"{rel}:{pending[0] + 1}: 'not run' marker not followed by a code block")

    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE_RE.match(line)
        if m and not (m.group("fence")[0] == "`" and "`" in m.group("info")):
            indent, fence = len(m.group("indent")), m.group("fence")
            lang = (m.group("info").split() or [""])[0].lower().strip("{.}")
            body: list[str] = []
            j = i + 1
            while j < len(lines):
                c = re.match(r"^\s*(`{3,}|~{3,})\s*$", lines[j])
                if c and c.group(1)[0] == fence[0] and len(c.group(1)) >= len(fence):
                    break
                body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j].lstrip())
                j += 1
            else:
                page.problems.append(f"{rel}:{i + 1}: the code block opened here is never closed")
            reason = None
            if pending is not None:
                reason = pending[1]
                if pending[0] != i - 1:  # the block is still not run: the marker shows the intent
                    page.problems.append(f"{rel}:{pending[0] + 1}: blank line(s) between the 'not run' marker and "
                                         f"the block at line {i + 1}: put the marker right before the fence")
                if lang not in SH_LANGS | PYTHON_LANGS:
                    page.problems.append(f"{rel}:{pending[0] + 1}: 'not run' marker before a ```{lang} block, "
                                         "which is never run: drop the marker")
                pending = None
            page.blocks.append(CodeBlock(rel, i + 1, lang, "\n".join(body) + "\n", reason))
            for k in range(i, min(j + 1, len(lines))):
                prose_lines[k] = ""
            i = j + 1
            continue
        if LOOSE_MARKER_RE.match(line):
            if pending is not None:
                orphan()
            strict = MARKER_RE.match(line)
            if strict:
                pending = (i, strict.group("reason"))
            else:
                page.problems.append(f"{rel}:{i + 1}: malformed marker {line.strip()!r}: write "
                                     "'<!-- not run: REASON -->' with a reason")
                pending = (i, "(malformed marker)")
        elif pending is not None and line.strip():
            orphan()
            pending = None
        i += 1
    if pending is not None:
        orphan()
    text = "\n".join(prose_lines)
    text = re.sub(r"<!--.*?-->", lambda m: _blank(m.group()), text, flags=re.DOTALL)
    page.prose, spans = _mask_code_spans(text)
    page.spans = [(page.line_of(start), " ".join(content.split())) for start, _, content in spans]
    return page


def doc_paths() -> list[Path]:
    """README.md and every docs/**/*.md, sorted."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


@cache
def pages() -> tuple[Page, ...]:
    """Every checked page, read once per test session."""
    return tuple(read_page(p) for p in doc_paths())


# ---------------------------------------------------------------------------------------------
# Anchors and links


def _heading_text(raw: str) -> str:
    """The text GitHub renders for a heading's Markdown source (code kept, markup dropped)."""
    raw = re.sub(r"(?:^|[ \t]+)#+[ \t]*$", "", raw.strip())  # an ATX closing sequence
    parts = re.split(r"(`+)(.+?)\1", raw)
    out = []
    for k in range(0, len(parts), 3):  # split() yields text, ticks, code, text, ticks, code, ...
        text = parts[k]
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # images and inline links -> their text
        text = re.sub(r"!?\[([^\]]*)\]\[[^\]]*\]", r"\1", text)  # reference links
        text = re.sub(r"<[^>]+>", "", text)  # HTML tags
        text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # _emphasis_ / __strong__ (intraword _ stays)
        text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)  # backslash escapes
        out.append(html.unescape(text))
        if k + 2 < len(parts):
            out.append(parts[k + 2].strip())
    return "".join(out)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading's text, before duplicates are numbered.

    Lowercase; drop every character but letters, digits, `_`, `-` and spaces; each space -> `-`.
    """
    return re.sub(r"[^\w\- ]", "", _heading_text(heading).strip().lower()).replace(" ", "-")


def page_anchors(lines: list[str]) -> list[str]:
    """Every anchor GitHub makes for a Markdown page: headings (numbered -1, -2 when repeated) and
    explicit `<a name=...>` / `<a id=...>`.
    """
    headings: list[str] = []
    explicit: list[str] = []
    in_fence: str | None = None
    prev = ""
    for line in lines:
        fm = FENCE_RE.match(line)
        if in_fence:
            if re.match(r"^\s*" + re.escape(in_fence[0]) + "{" + str(len(in_fence)) + r",}\s*$", line):
                in_fence = None
            prev = ""
            continue
        if fm and not (fm.group("fence")[0] == "`" and "`" in fm.group("info")):
            in_fence = fm.group("fence")
            prev = ""
            continue
        atx = ATX_RE.match(line)
        if atx:
            headings.append(atx.group(2) or "")
            prev = ""
            continue
        if SETEXT_RE.match(line) and prev.strip() and not re.match(r"^\s*([-*+>|]|\d+[.)])\s", prev) \
                and not prev.lstrip().startswith("<"):
            headings.append(prev)
            prev = ""
            continue
        explicit += HTML_ANCHOR_RE.findall(line)
        prev = line
    occurrences: dict[str, int] = {}
    anchors = []
    for heading in headings:  # github-slugger's numbering
        original = result = github_slug(heading)
        while result in occurrences:
            occurrences[original] += 1
            result = f"{original}-{occurrences[original]}"
        occurrences[result] = 0
        anchors.append(result)
    return anchors + explicit


@cache
def anchors_of(path: Path) -> tuple[str, ...]:
    """The anchors of the Markdown file at path (read once)."""
    return tuple(page_anchors(path.read_text(encoding="utf-8").split("\n")))


@cache
def repo_paths() -> frozenset[str] | None:
    """Every file git tracks or would track (untracked, not ignored), and every folder above one,
    relative to the repository; None outside a git checkout (then the file system decides).
    """
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    paths: set[str] = set()
    for f in filter(None, out.split("\0")):
        if not (REPO / f).exists():  # deleted in the work tree
            continue
        paths.add(f)
        parts = f.split("/")
        paths.update("/".join(parts[:k]) for k in range(1, len(parts)))
    return frozenset(paths)


def link_targets(page: Page) -> Iterator[tuple[int, str]]:
    """(line, target) of every link and image in the page's prose: `[text](target "title")`,
    `![alt](src)`, reference definitions `[ref]: target`, `<img src>` / `<a href>` and `<https://...>`.
    """
    text = page.prose
    for m in re.finditer(r"\]\(", text):
        k = m.end()
        while k < len(text) and text[k] in " \t\n":
            k += 1
        if text.startswith("<", k):
            end = text.find(">", k)
            if end < 0:
                continue
            yield page.line_of(m.start()), text[k + 1:end]
            continue
        depth, start = 0, k
        while k < len(text) and not text[k].isspace():
            if text[k] == "(":
                depth += 1
            elif text[k] == ")":
                if depth == 0:
                    break
                depth -= 1
            k += 1
        yield page.line_of(m.start()), text[start:k]
    for m in REF_DEF_RE.finditer(text):
        yield page.line_of(m.start()), m.group(1).strip("<>")
    for m in HTML_LINK_RE.finditer(text):
        yield page.line_of(m.start()), m.group(1)
    for m in re.finditer(r"<(https?://[^>\s]*)>", text):
        yield page.line_of(m.start()), m.group(1)


def _url_problem(url: str) -> str | None:
    """Why an http(s) URL is malformed, or None (it is not fetched)."""
    if re.search(r"\s", url):
        return "URL contains whitespace"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError as exc:
        return f"malformed URL ({exc})"
    host = parts.hostname or ""
    if not host:
        return "URL has no host"
    ipv6 = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|" + ipv6, host) or ".." in host:
        return f"malformed host {host!r}"
    if "." not in host and host != "localhost" and ":" not in host:
        return f"host {host!r} has no domain"
    return None


def _anchor_problem(anchor: str, target: Path, rel_target: str, query: str) -> str | None:
    """Why #anchor does not exist in target, or None."""
    if not anchor:
        return "empty anchor '#'"
    if target.is_dir():
        return f"anchor #{anchor} on a folder"
    if target.suffix.lower() in {".md", ".markdown"} and "plain=1" not in query:
        anchors = anchors_of(target)
        if urllib.parse.unquote(anchor) in anchors:
            return None
        close = difflib.get_close_matches(anchor.lower(), anchors, n=1, cutoff=0.6)
        hint = f" (did you mean #{close[0]}?)" if close else ""
        return f"no heading with anchor #{anchor} in {rel_target}{hint}"
    if LINE_ANCHOR_RE.fullmatch(anchor):
        return None
    return f"anchor #{anchor} in {rel_target}, which is not Markdown: only #L10 or #L10-L20 line anchors work there"


def link_problem(page: Page, target: str) -> str | None:
    """Why a link target of page is broken, or None when it resolves."""
    if not target:
        return "empty link target"
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", target)
    if scheme:
        if scheme.group(1).lower() in {"http", "https"}:
            return _url_problem(target)
        if scheme.group(1).lower() == "mailto":
            return None
        return f"scheme {scheme.group(1)}: use a relative link or an http(s) URL"
    if target.startswith("//"):
        return "protocol-relative URL: write https://"
    path_part, _, anchor = target.partition("#")
    path_part, _, query = path_part.partition("?")
    here = REPO / page.rel
    if not path_part:
        return _anchor_problem(anchor, here, page.rel, query)
    if path_part.startswith("/"):
        return "absolute path: use a path relative to the page"
    resolved = Path(os.path.normpath(here.parent / urllib.parse.unquote(path_part)))
    try:
        rel_target = resolved.relative_to(REPO).as_posix()
    except ValueError:
        return "points outside the repository"
    known = repo_paths()
    if rel_target == ".":
        exists = True
    elif known is None:
        exists = resolved.exists()
    else:
        exists = rel_target in known
    if not exists:
        if resolved.exists():
            return f"{rel_target} is ignored by git, so it is not in the repository"
        return f"no file or folder {rel_target}"
    if anchor or target.endswith("#"):
        return _anchor_problem(anchor, resolved, rel_target, query)
    return None


# ---------------------------------------------------------------------------------------------
# edgeport command lines


@dataclass(frozen=True)
class CliSpec:
    """What `edgeport` accepts: its own options, and each subcommand's options."""

    top_options: frozenset[str]
    commands: dict[str, frozenset[str]]


@cache
def cli_spec() -> CliSpec:
    """Read the subcommands and their option strings from edgeport.cli.build_parser()."""
    from edgeport.cli import build_parser

    parser = build_parser()
    commands: dict[str, frozenset[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands[name] = frozenset(sub._option_string_actions)
    return CliSpec(frozenset(parser._option_string_actions), commands)


def _shell_tokens(command: str) -> list[str]:
    """Split a shell command line into words and operator tokens (`&&`, `|`, `(`, ...); a word that
    starts with `#` starts a comment. Unbalanced quotes fall back to splitting on whitespace.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:
        tokens = command.split()
    for k, tok in enumerate(tokens):
        if tok.startswith("#"):
            return tokens[:k]
    return tokens


def simple_commands(command: str) -> Iterator[list[str]]:
    """The words of each simple command of a shell command line (split at `;`, `&&`, `|`, `(`, ...),
    from the command's name on: leading `VAR=value` assignments and wrappers (`time`, `env`,
    `timeout 60`, ...) are left out.
    """
    segment: list[str] = []
    for tok in [*_shell_tokens(command), ";"]:
        if tok and set(tok) <= SHELL_SEPARATORS:
            k = 0
            while k < len(segment) and (ENV_ASSIGN_RE.fullmatch(segment[k]) or segment[k] in WRAPPERS):
                k += 1
                if segment[k - 1] == "timeout":  # timeout [-s SIGNAL] DURATION COMMAND
                    while k < len(segment) and re.fullmatch(r"-\S*|[A-Z]+|\d[\d.]*[smhd]?", segment[k]):
                        k += 1
            if k < len(segment):
                yield segment[k:]
            segment = []
        else:
            segment.append(tok)


def edgeport_invocations(command: str) -> Iterator[list[str]]:
    """The argument lists of every `edgeport` run in a shell command line: commands named `edgeport`
    or a path to it (`.venv/bin/edgeport`), and `python -m edgeport`. A quoted error message
    (`edgeport serve: error: ...`) is not a command line.
    """
    for words in simple_commands(command):
        name = words[0].rsplit("/", 1)[-1]
        if name == "edgeport":
            args = words[1:]
        elif re.fullmatch(r"python(3(\.\d+)?)?", name) and words[1:3] == ["-m", "edgeport"]:
            args = words[3:]
        else:
            continue
        if not (args and args[0].endswith(":")):
            yield args


def refused_command(code: str) -> str | None:
    """The first command of a shell block that the docs test never runs, or None.

    make targets bootstrap .venv and take minutes (`make test` would run this test again), pip
    installs need the network, and Docker, Kubernetes and apt reach outside the repository: a block
    with one of them must carry a 'not run' marker.
    """
    for _, line in _logical_lines(code, 0):
        for words in simple_commands(line):
            name = words[0].rsplit("/", 1)[-1]
            rest = [w for w in words[1:] if not w.startswith("-")]
            if name in REFUSED_COMMANDS or (name in {"pip", "pip3", "uv", "pipx"} and "install" in rest[:2]) \
                    or (re.fullmatch(r"python(3(\.\d+)?)?", name) and words[1:3] in (["-m", "pip"], ["-m", "pytest"])):
                return " ".join(words)
    return None


def command_problems(args: list[str], spec: CliSpec) -> list[str]:
    """What is wrong with one edgeport argument list: an unknown subcommand or unknown options.

    CAPS words are placeholders (a CAPS subcommand allows any subcommand's options), `...` stands
    for more, `--prefix...` for options with that prefix, and `[`/`]` around parts are dropped.
    """
    problems: list[str] = []
    known = spec.top_options
    command: str | None = ""
    for raw in args:
        tok = raw.strip("[]{}")
        if not tok or tok == "..." or tok == "-":
            continue
        if tok == "--":
            break
        if tok.startswith("-"):
            if re.fullmatch(r"-\d[\d.]*", tok):
                continue
            name = tok.split("=", 1)[0]
            if PLACEHOLDER_RE.fullmatch(name.lstrip("-")):
                continue
            if name.endswith("..."):
                if not any(o.startswith(name[:-3]) for o in known):
                    problems.append(f"no option starts with {name[:-3]}; known: {', '.join(sorted(known))}")
                continue
            if name not in known:
                problems.append(f"unknown option {name}; known: {', '.join(sorted(known))}")
            continue
        if command == "":  # the first word that is not an option: the subcommand
            if PLACEHOLDER_RE.fullmatch(tok):
                command = None
                known = frozenset().union(*spec.commands.values())
            elif tok in spec.commands:
                command = tok
                known = spec.commands[tok]
            else:
                problems.append(f"unknown command {tok}; known: {', '.join(sorted(spec.commands))}")
                break
    return problems


def _logical_lines(code: str, first_line: int) -> Iterator[tuple[int, str]]:
    """(line number, text) of each command line of a shell block: backslash continuations joined,
    comment lines and here-document bodies left out.
    """
    lines = code.split("\n")
    k = 0
    heredoc: str | None = None
    while k < len(lines):
        start, text = k, lines[k]
        if heredoc is not None:
            if lines[k].strip() == heredoc:
                heredoc = None
            k += 1
            continue
        while text.endswith("\\") and k + 1 < len(lines):
            k += 1
            text = text[:-1] + " " + lines[k]
        k += 1
        if text.lstrip().startswith("#") or not text.strip():
            continue
        doc = HEREDOC_RE.search(text)
        if doc:
            heredoc = doc.group(2)
        yield first_line + 1 + start, text.strip()


def _short(text: str, limit: int = 120) -> str:
    """text cut to limit characters."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Running blocks


def _stamp(path: Path) -> tuple[int, int]:
    """(size, mtime in ns) of path, (-1, -1) when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def _git_state() -> dict[str, tuple[str, int, int]] | None:
    """What `git status` shows, ignored paths included, with sizes and mtimes; None outside a git checkout.

    Modified and untracked files are listed one by one with their size and mtime, so that a change
    to an already modified file shows too. Ignored paths come as git lists them (artifacts/NAME/ as
    one folder): each with its mtime and its direct children's, so that an export into an existing
    artifacts/NAME/ shows.
    """
    state: dict[str, tuple[str, int, int]] = {}
    try:
        for args in (["--untracked-files=all"], ["--ignored", "--untracked-files=normal"]):
            out = subprocess.run(["git", "status", "--porcelain=v1", "-z", *args], cwd=REPO,
                                 capture_output=True, check=True).stdout.decode()
            entries = iter(out.split("\0"))
            for entry in entries:
                if len(entry) < 4:
                    continue
                code, path = entry[:2], entry[3:]
                if code[0] in "RC":  # a rename or copy: its source path follows
                    next(entries, None)
                state[path] = (code, *_stamp(REPO / path))
                if code == "!!" and path.endswith("/"):
                    with os.scandir(REPO / path) as children:
                        for child in children:
                            state[path + child.name] = ("!!", *_stamp(Path(child.path)))
    except (OSError, subprocess.CalledProcessError):
        return None
    return state


def _state_diff(before: dict[str, tuple[str, int, int]], after: dict[str, tuple[str, int, int]]) -> list[str]:
    """The paths whose git status changed between two _git_state() snapshots, described."""
    changed = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) == after.get(path):
            continue
        if path not in before:
            changed.append(f"{after[path][0].strip() or '?'} {path} (new)")
        elif path not in after:
            changed.append(f"{path} (back to its committed state, or removed)")
        else:
            changed.append(f"{after[path][0].strip()} {path} (changed)")
    return changed


def block_env() -> dict[str, str]:
    """The environment blocks run in: the interpreter's folder (.venv/bin) first on PATH, offline."""
    env = {k: v for k, v in os.environ.items() if k not in {"BASH_ENV", "ENV", "PYTEST_CURRENT_TEST"}}
    env.update(BLOCK_ENV)
    env[NESTED_ENV] = "1"
    # not resolved: .venv/bin/python is a link to the base interpreter, whose folder has no edgeport
    env["PATH"] = os.path.dirname(os.path.abspath(sys.executable)) + os.pathsep + env.get("PATH", "")
    return env


@dataclass(frozen=True)
class BlockRun:
    """How a block's process ended."""

    returncode: int | None  #: None when it ran past BLOCK_TIMEOUT_S (then it was killed)
    output: str  #: stdout and stderr together
    seconds: float
    left_running: bool  #: it exited, but processes it started were still running (they were killed)


def run_block(argv: list[str]) -> BlockRun:
    """Run argv from the repository root in a session of its own, for at most BLOCK_TIMEOUT_S.

    Output goes to a file, not a pipe, so a process the block leaves in the background cannot hold
    the run open; whatever is left of the session afterwards is killed.
    """
    t0 = time.monotonic()
    # TMPDIR a folder of the run's own, removed after it: a block's `mktemp -d` (docs/install.md's
    # "stands for your repository") otherwise left a folder in /tmp on every run of the suite
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory(prefix="edgeport-doc-block-") as tmp:
        proc = subprocess.Popen(argv, cwd=REPO, env={**block_env(), "TMPDIR": tmp}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode: int | None = proc.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        seconds = time.monotonic() - t0
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the session this run started
            left_running = returncode is not None
        except (ProcessLookupError, PermissionError):
            left_running = False
        proc.wait()
        log.seek(0)
        output = log.read().decode(errors="replace")
    return BlockRun(returncode, output, seconds, left_running)


def _tail(text: str, limit: int = 4000) -> str:
    """The last limit characters of text."""
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _checked_blocks() -> list[CodeBlock]:
    """The sh and python blocks of every hand-written page."""
    return [b for p in pages() if not p.generated for b in p.blocks if b.lang in SH_LANGS | PYTHON_LANGS]


# ---------------------------------------------------------------------------------------------
# The tests


def test_links_and_anchors_resolve() -> None:
    """Every relative link and image resolves to a file or folder of the repository, every anchor to
    a heading of its target, and every http(s) URL is well-formed (not fetched).
    """
    broken = [f"{page.rel}:{line} -> {target}: {why}"
              for page in pages() for line, target in link_targets(page)
              if (why := link_problem(page, target)) is not None]
    assert not broken, f"{len(broken)} broken link(s):\n" + "\n".join(broken)


def test_markdown_structure() -> None:
    """'not run' markers are well-formed and stand right before a sh/python block; fences are closed."""
    problems = [problem for page in pages() for problem in page.problems]
    assert not problems, "\n".join(problems)


def test_edgeport_commands_exist() -> None:
    """Every `edgeport ...` line in sh blocks and inline code spans uses real subcommands and options."""
    spec = cli_spec()
    problems = []
    for page in pages():
        if page.generated:
            continue
        found: list[tuple[int, str]] = []
        for block in page.blocks:
            if block.lang in SH_LANGS:
                found += _logical_lines(block.code, block.line)
        found += page.spans
        for line, command in found:
            for args in edgeport_invocations(command):
                shown = _short(" ".join(["edgeport", *args]))
                problems += [f"{page.rel}:{line}: `{shown}`: {why}" for why in command_problems(args, spec)]
    assert not problems, f"{len(problems)} problem(s) in edgeport command lines:\n" + "\n".join(problems)


#: Options of other tools that the reference pages name in inline code (pip, uv, Docker, kubectl, pytest-xdist).
OTHER_TOOLS_OPTIONS = {"--build-arg", "--dry-run", "--exclude-editable", "--ignore-requires-python", "--no-deps",
                       "--no-build-isolation", "--compile-bytecode", "--no-loadscope-reorder"}
#: Pages that record history (dated figures, decisions): an option may have been renamed since.
HISTORY = ("docs/benchmarks.md", "docs/decisions/")


def test_every_option_the_reference_names_exists() -> None:
    """An option renamed in cli.py cannot stay documented under its old name: every `--option` in
    an inline code span of the reference pages (tables and prose, not only command lines) is one
    that some edgeport command takes (a prefix such as `--subgroup-` stands for several), or
    another tool's, listed in OTHER_TOOLS_OPTIONS."""
    spec = cli_spec()
    known = set(spec.top_options).union(*spec.commands.values())
    problems = []
    for page in pages():
        if page.generated or page.rel.startswith(HISTORY):
            continue
        for line, span in page.spans:
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span):
                prefix_of_known = flag.endswith("-") and any(k.startswith(flag) for k in known)
                if flag not in known and flag not in OTHER_TOOLS_OPTIONS and not prefix_of_known:
                    problems.append(f"{page.rel}:{line}: `{flag}` is no option of edgeport (in `{_short(span)}`)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("block", _checked_blocks(), ids=lambda b: b.id)
def test_code_block(block: CodeBlock) -> None:
    """A sh/python block parses, and unless marked 'not run' it exits 0 quickly without changing the
    repository.
    """
    if block.lang in SH_LANGS:
        prompts = [k for k, line in enumerate(block.code.split("\n"), block.line + 1) if line.startswith("$ ")]
        assert not prompts, (f"{block.id}: line(s) {prompts} start with a '$ ' prompt: drop the prompts (and put "
                             "output in a ```text block) so the block can be copied and run")
        syntax = run_block(["bash", "-n", "-c", block.code, block.id])
        assert syntax.returncode == 0, f"{block.id}: bash -n: syntax error:\n{syntax.output}"
    else:
        prompts = [k for k, line in enumerate(block.code.split("\n"), block.line + 1) if line.startswith(">>>")]
        assert not prompts, (f"{block.id}: line(s) {prompts} start with a '>>>' prompt: drop the prompts (and put "
                             "output in comments or a ```text block) so the block can be copied and run")
        try:
            ast.parse(block.code, filename=block.id)
        except SyntaxError as exc:
            pytest.fail(f"{block.id}: python syntax error: {exc}")
    if not block.runs:
        return
    if os.environ.get(NESTED_ENV):
        pytest.skip("started by a block of the docs test: blocks are not run again")
    if block.lang in SH_LANGS and (refused := refused_command(block.code)) is not None:
        pytest.fail(f"{block.id}: `{_short(refused)}` is never run by the docs test (minutes, network, or "
                    "outside the repository): put '<!-- not run: REASON -->' on the line before the fence")
    before = _git_state()
    if block.lang in SH_LANGS:
        run = run_block(["bash", "-e", "-c", block.code, block.id])
    else:
        run = run_block([sys.executable, "-c", block.code])
    after = _git_state()
    hint = ("; if it is slow, writes into the repository or needs what the repository lacks, put "
            "'<!-- not run: REASON -->' on the line before its fence")
    assert run.returncode is not None, (f"{block.id}: still running after {BLOCK_TIMEOUT_S:.0f} s (killed){hint}\n"
                                        f"{_tail(run.output)}")
    assert run.returncode == 0, f"{block.id}: exit status {run.returncode}{hint}\n{_tail(run.output)}"
    assert not run.left_running, (f"{block.id}: exited but left processes running (killed): stop what the block "
                                  f"starts before it ends\n{_tail(run.output)}")
    if before is not None and after is not None:
        changed = _state_diff(before, after)
        assert not changed, (f"{block.id} changed the repository (write under /tmp instead, or mark the block "
                             "'<!-- not run: REASON -->'):\n" + "\n".join(changed))
    if run.seconds > SLOW_BLOCK_S:
        warnings.warn(f"{block.id} took {run.seconds:.1f} s: mark blocks over ~5 s '<!-- not run: REASON -->'",
                      stacklevel=1)


# ---------------------------------------------------------------------------------------------
# The checker's own rules, on small inputs


@pytest.mark.parametrize("heading, anchor", [
    ("The report: report.json", "the-report-reportjson"),
    ("`edgeport serve`", "edgeport-serve"),
    ("Budgets and `--max-accuracy-regression`", "budgets-and---max-accuracy-regression"),
    ("What **int8** means (and why)", "what-int8-means-and-why"),
    ("max_subgroup_drop, per _subgroup_", "max_subgroup_drop-per-subgroup"),
    ("[Link text](other.md) here ##", "link-text-here"),
    ("Kubernetes & KServe", "kubernetes--kserve"),
    ("Core ML 9.0 / macOS", "core-ml-90--macos"),
])
def test_github_slug(heading: str, anchor: str) -> None:
    """github_slug computes GitHub's anchor of a heading."""
    assert github_slug(heading) == anchor


def test_page_anchors_number_duplicates_and_skip_code() -> None:
    """Repeated headings get -1, -2; headings inside fenced blocks are not headings; setext counts."""
    lines = ["# Title", "## Usage", "```sh", "# not a heading", "```", "## Usage", "Usage", "-----",
             '<a name="custom"></a>']
    assert page_anchors(lines) == ["title", "usage", "usage-1", "usage-2", "custom"]


def test_command_problems_on_examples() -> None:
    """Placeholders, `...`, brackets and parent options pass; unknown commands and options are named."""
    spec = CliSpec(frozenset({"-h", "--help", "--version"}),
                   {"export": frozenset({"-h", "--help", "--out", "--config", "--variants"}),
                    "validate": frozenset({"-h", "--help", "--eval", "--subgroup-pattern"})})
    ok = ["export MODEL --out DIR --config=FILE", "export MODEL [--out DIR] ...", "validate --subgroup-...",
          "COMMAND --help", "--version", "export --OPTION VALUE"]
    for line in ok:
        assert command_problems(shlex.split(line), spec) == [], line
    assert command_problems(["export", "--foo"], spec)[0].startswith("unknown option --foo; known: ")
    assert command_problems(["exprt"], spec)[0].startswith("unknown command exprt")
    assert command_problems(["validate", "--sub-..."], spec)[0].startswith("no option starts with --sub-")


def test_edgeport_invocations_find_commands_in_position() -> None:
    """edgeport is found after env assignments, operators and wrappers, not as an argument."""
    line = ("FOO=1 .venv/bin/edgeport export x --out /tmp/a && edgeport gate /tmp/a | tee log "
            "# edgeport comment; pip install edgeport; time python -m edgeport backends --json")
    assert list(edgeport_invocations(line)) == [["export", "x", "--out", "/tmp/a"], ["gate", "/tmp/a"]]
    assert list(edgeport_invocations("pip install edgeport; time python -m edgeport backends --json")) == [
        ["backends", "--json"]]
    assert list(edgeport_invocations("edgeport serve: error: needs the serve backend")) == []
    assert refused_command("echo ok\nFOO=1 make export-all  # slow\n") == "make export-all"
    assert refused_command("python -m pip install -U 'edgeport[serve]'") == "python -m pip install -U edgeport[serve]"
    assert refused_command("pip show edgeport && edgeport backends") is None
    assert list(_logical_lines("# c\nedgeport export \\\n  --out X\ncat <<EOF\nedgeport nope\nEOF\n", 10)) == [
        (12, "edgeport export    --out X"), (14, "cat <<EOF")]


def test_run_block_timeout_and_leftovers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block past its time is killed and reported; a background process it leaves is killed; what
    it makes with mktemp is removed."""
    monkeypatch.setattr(sys.modules[__name__], "BLOCK_TIMEOUT_S", 0.5)
    slow = run_block(["bash", "-e", "-c", "echo started; sleep 30"])
    assert slow.returncode is None and "started" in slow.output and slow.seconds < 5
    left = run_block(["bash", "-e", "-c", "sleep 30 & echo done"])
    assert left.returncode == 0 and left.left_running and left.seconds < 5
    clean = run_block(["bash", "-e", "-c", "false; echo unreachable"])
    assert clean.returncode == 1 and not clean.left_running and "unreachable" not in clean.output
    scratch = run_block(["bash", "-e", "-c", 'cd "$(mktemp -d)" && touch edgeport.toml && pwd'])
    made = Path(scratch.output.strip())
    assert scratch.returncode == 0 and made.name.startswith("tmp.") and not made.parent.exists(), scratch.output


def test_link_problem_on_examples() -> None:
    """Relative links resolve against the page; anchors against the target's headings."""
    page = parse_page("docs/example.md", "# Example\n## The report: report.json\n")
    assert link_problem(page, "../README.md") is None
    assert link_problem(page, "../pyproject.toml#L1-L3") is None
    assert link_problem(page, "../tests/") is None
    assert link_problem(page, "https://github.com/onnx/onnx2tf#readme") is None
    assert link_problem(page, "http://[::1]:8080/health") is None
    assert "no file or folder docs/nope.md" in link_problem(page, "nope.md")
    assert "no heading with anchor #nope in README.md" in link_problem(page, "../README.md#nope")
    assert "not Markdown" in link_problem(page, "../pyproject.toml#project")
    assert "absolute path" in link_problem(page, "/README.md")
    assert "outside the repository" in link_problem(page, "../../etc/passwd")
    assert "whitespace" in link_problem(page, "https://exa mple.com")
    assert "no host" in link_problem(page, "https:///path")


def test_parse_page_markers() -> None:
    """A marker right before a fence skips the block; a misplaced or reason-less marker is a problem,
    and the block after a misplaced one is still not run.
    """
    text = ("# T\n<!-- not run: needs Docker -->\n```sh\ndocker build .\n```\n\n<!-- not run: slow -->\n\n"
            "```sh\nmake export-all\n```\n<!-- not run -->\n```python\nprint(1)\n```\n```sh\necho `a` [x](y)\n```\n")
    page = parse_page("docs/example.md", text)
    assert [(b.line, b.skip_reason) for b in page.blocks] == [
        (3, "needs Docker"), (9, "slow"), (13, "(malformed marker)"), (16, None)]
    assert len(page.problems) == 2 and "blank line" in page.problems[0] and "malformed" in page.problems[1]
    assert list(link_targets(page)) == []

