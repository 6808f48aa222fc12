"""Speed and memory of unrolled against the plain torch.nn loop: a thin runner for `unrolled bench`.

    python benchmarks/speed.py --quick          # Markdown tables
    python benchmarks/speed.py --json > out.json

The code lives in the `unrolled.bench` package (training.py, roofline.py, sampling.py, memory.py,
report.py) so the installed package has it too; this script and `unrolled bench` run the same
command, with the same flags.
"""
import sys

from unrolled.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
