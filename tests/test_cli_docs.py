"""docs/cli.md documents every argument and flag of every command, and names no flag that does not exist.

Each command in `cli.COMMANDS` has a section headed "## `unrolled NAME`" whose tables list its
positional arguments and flags, one row each (the first cell names it, the second is its default).
These tests build every parser and compare it with its section, so a flag added, renamed or removed
in src/unrolled/cli/ (or in unrolled.charlm.config, for `unrolled train`) fails here until the page says so.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from unrolled import cli
from unrolled.charlm import config as C

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
HEADING = re.compile(r"^## `unrolled ([a-z0-9-]+)`\s*$")
FLAG = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")
# Positional arguments appear in the docs under the names the page uses for them (its metavar
# when the parser gives one, else these, else the argument's name in capitals); nargs * or +
# adds "...".
POSITIONAL_NAMES = {"checkpoint": "CKPT", "corpus": "TEXT"}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, built by its own add_<command> function."""
    parsers = {}
    for add in cli.COMMANDS:
        sub = argparse.ArgumentParser(prog="unrolled").add_subparsers()
        add(sub)
        ((name, parser),) = sub.choices.items()
        parsers[name] = parser
    return parsers


PARSERS = _parsers()
TEXT = DOC.read_text(encoding="utf-8")


def _sections(text: str) -> tuple[str, dict[str, str]]:
    """(the text before the first command section, {command: its section's text}). A section runs
    from its heading to the next heading of level 1 or 2."""
    intro, sections, current = [], {}, None
    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            current = m.group(1)
            assert current not in sections, f"docs/cli.md has two sections for `unrolled {current}`"
            sections[current] = []
        elif re.match(r"^#{1,2} ", line) and current is not None:
            current = None
            intro.append(line)  # a general section after the commands counts as intro text
        elif current is None:
            intro.append(line)
        else:
            sections[current].append(line)
    return "\n".join(intro), {k: "\n".join(v) for k, v in sections.items()}


INTRO, SECTIONS = _sections(TEXT)


def _cells(row: str) -> list[str]:
    """A Markdown table row -> its cells (an escaped \\| stays inside its cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _rows(section: str) -> dict[str, str]:
    """The documented arguments of a section: {name in the first cell: the default cell}."""
    rows = {}
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= set("|- :"):
            continue
        cells = _cells(line)
        m = re.fullmatch(r"`([^`\s]+)[^`]*`", cells[0])
        if m and len(cells) >= 2:
            rows[m.group(1)] = cells[1].strip("`")
    return rows


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _doc_name(action: argparse.Action) -> str:
    name = action.metavar or POSITIONAL_NAMES.get(action.dest, action.dest.upper())
    return name + ("..." if action.nargs in ("*", "+") else "")


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _default(command: str, action: argparse.Action):
    """What the flag defaults to: the parser's default, or for `unrolled train` (whose flags default
    to None so a config file can set them) the config field's default."""
    if command == "train":
        for cls in C.PARTS.values():
            for f in fields(cls):
                if f.name == action.dest:
                    return f.default if f.default is not MISSING else f.default_factory()
    return action.default


def test_every_command_has_one_section_and_no_other():
    assert set(SECTIONS) == set(PARSERS), (
        f"commands without a section in docs/cli.md: {sorted(set(PARSERS) - set(SECTIONS))}; "
        f"sections for no command: {sorted(set(SECTIONS) - set(PARSERS))}")


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_section_documents_every_argument_and_flag(command):
    rows = _rows(SECTIONS.get(command, ""))
    missing = []
    for action in _arguments(PARSERS[command]):
        names = action.option_strings or [_doc_name(action)]
        missing += [n for n in names if n not in rows]
    assert not missing, f"docs/cli.md, section `unrolled {command}`: no table row for {missing}"


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_section_names_only_flags_the_command_has(command):
    known = _option_strings(PARSERS[command])
    text = SECTIONS.get(command, "")
    # the summary table's row for this command counts as part of its section
    text += "\n" + "\n".join(line for line in INTRO.splitlines()
                             if re.match(rf"^\| `unrolled {re.escape(command)}[ `]", line))
    unknown = sorted(set(FLAG.findall(text)) - known)
    assert not unknown, f"docs/cli.md names flags `unrolled {command}` does not have: {unknown}"
    rows = _rows(SECTIONS.get(command, ""))
    positionals = {_doc_name(a) for a in _arguments(PARSERS[command]) if not a.option_strings}
    extra = sorted(n for n in rows if not n.startswith("-") and n not in positionals)
    assert not extra, f"docs/cli.md, section `unrolled {command}`: rows for arguments it does not take: {extra}"


def test_text_outside_the_sections_names_only_existing_flags():
    known = set().union(*(_option_strings(p) for p in PARSERS.values()))
    lines = [line for line in INTRO.splitlines() if not line.startswith("| `torchrun ")]
    unknown = sorted(set(FLAG.findall("\n".join(lines))) - known)
    assert not unknown, f"docs/cli.md names flags no command has: {unknown}"


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_documented_defaults_match_the_parser(command):
    rows = _rows(SECTIONS.get(command, ""))
    wrong = []
    for action in _arguments(PARSERS[command]):
        default = _default(command, action)
        if default is None or isinstance(default, bool) or not action.option_strings:
            continue  # None and switches are worded for people ("drawn", "off", a path pattern)
        written = rows.get(action.option_strings[-1])
        accepted = {str(default)} | ({f"{default:g}"} if isinstance(default, float) else set())
        if written is not None and written not in accepted:
            wrong.append(f"{action.option_strings[-1]}: docs say {written!r}, the parser {default!r}")
    assert not wrong, f"docs/cli.md, section `unrolled {command}`: " + "; ".join(wrong)
