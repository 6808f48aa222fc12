"""Loss curves of a run as a PNG: training and validation bits per character against steps.

Reads RUN/metrics.jsonl (one JSON object per line: step, split = train | val | test, bpc, ...),
the file `unrolled train` appends to, so it can be drawn while a run is still going.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from unrolled.errors import UserError


def read_metrics(run: str | os.PathLike) -> list[dict]:
    path = Path(run)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run} has no metrics.jsonl; give the run directory that `unrolled train` wrote")
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break  # a run killed mid-write leaves at most its last line unfinished
            raise UserError(f"{path} line {number} is not JSON; the metrics file is damaged") from None
    if not rows:
        raise UserError(f"{path} is empty: the run has not logged a step yet (see --log-every)")
    return rows


def plot(run: str | os.PathLike, out: str | os.PathLike | None = None, title: str | None = None) -> Path:
    """Draw RUN's loss curves (bits per character) into `out` (default RUN/loss.png); return it."""
    # matplotlib is imported here, not at the top, as in understand/render.py: choosing the Agg
    # backend must come before pyplot is first imported, and only drawing should pay its 0.3 s.
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    rows = read_metrics(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    out = Path(out) if out else run_dir / "loss.png"
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for split, style in (("train", dict(lw=1, alpha=0.8)), ("val", dict(marker="o", ms=3, lw=1.5))):
        pts = [(r["step"], r["bpc"]) for r in rows if r.get("split") == split and r.get("bpc") is not None]
        if pts:
            ax.plot(*zip(*pts), label=split, **style)
    for r in rows:
        if r.get("split") == "test" and r.get("bpc") is not None:
            ax.scatter([r["step"]], [r["bpc"]], marker="*", s=90, color="black", zorder=3,
                       label=f"test {r['bpc']:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.set_title(title or f"{run_dir.name}: loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, out)  # never a half-written PNG under the real name
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out
