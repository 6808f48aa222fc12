"""Speed and memory of unrolled against the plain torch.nn loop: a thin runner for `unrolled bench`.

    python benchmarks/speed.py --quick          # Markdown tables
    python benchmarks/speed.py --json > out.json

The code lives in `unrolled.bench` so the installed package has it too (`unrolled bench`).
"""
import sys

from unrolled.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
