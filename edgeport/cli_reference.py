"""Render the `edgeport` argparse parser to Markdown: docs/cli.md.

    python -m edgeport.cli_reference [--check] [PATH]

Writes PATH (default docs/cli.md); with --check, writes nothing and exits 1 with a short diff when
PATH differs from what the parser gives. The output depends only on the parser (fixed usage width,
no terminal size), so it is the same on every machine.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

COMMAND = "python -m edgeport.cli_reference"
DEFAULT_PATH = Path("docs/cli.md")
USAGE_WIDTH = 100  # columns the usage lines are wrapped at, whatever the terminal
DIFF_LINES = 40  # lines of diff --check prints at most


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown reference of parser (default: edgeport.cli.build_parser()) and its subcommands."""
    if parser is None:
        from edgeport.cli import build_parser

        parser = build_parser()
    subcommands = _subcommands(parser)
    lines = [f"# {parser.prog} command-line reference", "",
             f"Every `{parser.prog}` command and option, generated from the argparse parser by `{COMMAND}` "
             "(`make docs`); do not edit it by hand. Every command also takes `-h`/`--help`.", ""]
    if subcommands:
        lines += ["| Command | What it does |", "| --- | --- |"]
        lines += [f"| [{sub.prog}](#{_anchor(sub.prog)}) | {_cell(help_text)} |" for sub, help_text in subcommands]
        lines.append("")
    for section_parser, help_text in [(parser, None), *subcommands]:
        lines += _section(section_parser, help_text)
    return "\n".join(lines).rstrip("\n") + "\n"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[argparse.ArgumentParser, str | None]]:
    """(subparser, its one-line help) for every subcommand, in the order they were added."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            found += [(sub, helps.get(name)) for name, sub in action.choices.items()]
    return found


def _section(parser: argparse.ArgumentParser, help_text: str | None) -> list[str]:
    """One command: heading, help, description (preformatted, as --help shows it), usage, a table per group."""
    lines = [f"## {parser.prog}", ""]
    if help_text:
        lines += [_sentence(_cell(help_text)), ""]
    if parser.description:
        lines += ["```text", parser.description.strip("\n"), "```", ""]
    lines += ["Usage:", "", "```text", _usage(parser), "```", ""]
    for group in parser._action_groups:
        rows = [_row(parser, action) for action in group._group_actions
                if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))]
        if not rows:
            continue
        title = (group.title or "arguments").capitalize()
        lines += [f"{title}: {_cell(group.description)}" if group.description else f"{title}:", "",
                  "| Argument | Value | Default | Description |", "| --- | --- | --- | --- |", *rows, ""]
    return lines


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage lines, wrapped at USAGE_WIDTH whatever $COLUMNS says."""
    formatter = argparse.HelpFormatter(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip("\n")


def _row(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """One table row: flags (or a positional's name), value syntax, default or 'required', help."""
    formatter = argparse.HelpFormatter(prog=parser.prog, width=USAGE_WIDTH)
    if action.option_strings:
        names = action.option_strings
        value = formatter._format_args(action, action.dest.upper()) if action.nargs != 0 else ""
    else:
        names = [formatter._metavar_formatter(action, action.dest)(1)[0]]
        value = formatter._format_args(action, action.dest)
        value = "" if value == names[0] else value  # only where nargs adds to the name: [REPORT ...]
    default = action.default
    if action.required and action.nargs not in ("?", "*"):  # argparse marks a bare nargs="*" required
        shown = "required"
    elif default is None or default is argparse.SUPPRESS or action.nargs == 0 or default == []:
        shown = ""  # flags, and options whose absence means "not given"
    else:
        shown = _code(str(default))
    help_text = formatter._expand_help(action) if action.help and action.help is not argparse.SUPPRESS else ""
    return (f"| {', '.join(map(_code, names))} | {_code(value) if value else ''} | {shown} "
            f"| {_cell(help_text)} |")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercased, spaces to '-', other punctuation but '-' and '_' dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _code(text: str) -> str:
    """text as an inline code span that is safe in a table cell."""
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str | None) -> str:
    """Prose for one table cell (or paragraph): one line, Markdown-escaped outside its `code` spans."""
    parts = re.split(r"(`[^`]*`)", " ".join((text or "").split()))
    escaped = [part if part.startswith("`") else _escape(part) for part in parts]
    return "".join(escaped).replace("|", "\\|")


def _escape(text: str) -> str:
    """Escape what Markdown would read as markup: '*', '<' (HTML), '\\' before punctuation, '_' at word ends."""
    text = re.sub(r"(\\(?=[!-/:-@[-`{-~])|[*<])", r"\\\1", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)  # intraword '_' is literal already


def _sentence(text: str) -> str:
    """A help phrase as a sentence: capitalized, with a final period."""
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def check(path: Path, text: str) -> list[str]:
    """The unified diff between path and text (empty when they are the same)."""
    old = path.read_text().splitlines(keepends=True) if path.exists() else []
    return list(difflib.unified_diff(old, text.splitlines(keepends=True), str(path), f"{COMMAND} (the parser)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Write docs/cli.md from edgeport's argparse parser.")
    parser.add_argument("path", type=Path, nargs="?", default=DEFAULT_PATH, metavar="PATH",
                        help="the Markdown file (default %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 with a diff when PATH is not what the parser gives")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.path.exists():
            print(f"{args.path} does not exist: run `{COMMAND} {args.path}` (or `make docs`)")
            return 1
        diff = check(args.path, text)
        if diff:
            sys.stdout.writelines(diff[:DIFF_LINES])
            more = f" ({len(diff) - DIFF_LINES} more diff lines)" if len(diff) > DIFF_LINES else ""
            print(f"\n{args.path} is out of date{more}: run `{COMMAND} {args.path}` (or `make docs`)")
            return 1
        print(f"{args.path} is up to date")
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
