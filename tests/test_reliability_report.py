"""The reliability tests' own numbers, and the table of docs/reliability.md made from them.

Each reliability test calls `report(area, fault, cases, result)` once it has passed. With the
environment variable UNROLLED_RELIABILITY_REPORT naming a file, the rows are appended there as
JSON lines; otherwise `report` does nothing. Running this file as a script runs the reliability
tests and prints the Markdown table:

    python tests/test_reliability_report.py            # from the repository root
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

ENV = "UNROLLED_RELIABILITY_REPORT"


def report(area: str, fault: str, cases: int, result: str) -> None:
    """Record that `cases` cases of one fault or input class ended as `result` (a test passed)."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"area": area, "fault": fault, "cases": int(cases), "result": result}) + "\n")


def test_report_appends_rows_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    report("a", "b", 1, "c")  # no file named: nothing written, nothing raised
    monkeypatch.setenv(ENV, str(tmp_path / "rows.jsonl"))
    report("a", "b", 2, "c")
    assert json.loads((tmp_path / "rows.jsonl").read_text()) == {"area": "a", "fault": "b", "cases": 2, "result": "c"}


def table(rows: list[dict]) -> str:
    """Rows with the same area and fault are one line; their cases add up."""
    merged: OrderedDict[tuple, dict] = OrderedDict()
    for r in rows:
        key = (r["area"], r["fault"], r["result"])
        if key in merged:
            merged[key]["cases"] += r["cases"]
        else:
            merged[key] = dict(r)
    lines = ["| area | fault or input class | cases | result |", "| --- | --- | ---: | --- |"]
    lines += [f"| {r['area']} | {r['fault']} | {r['cases']:,} | {r['result']} |" for r in merged.values()]
    total = sum(r["cases"] for r in merged.values())
    lines.append(f"| **all** | {len(merged)} classes | **{total:,}** | |")
    return "\n".join(lines)


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as d:
        rows_file = Path(d) / "rows.jsonl"
        env = {**os.environ, ENV: str(rows_file)}
        tests = sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_reliability_*.py"))
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=root, env=env, capture_output=True, text=True)
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(table(rows))
    print(f"\n`python -m pytest {' '.join(tests)}`: {summary}")
    if done.returncode:
        print(done.stdout[-4000:], file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
