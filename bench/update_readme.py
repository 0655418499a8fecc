"""Rewrite the README's speed table from a fresh benchmark run (bench_sandbox.py).

Run on a quiet machine: ``.venv/bin/python bench/update_readme.py``. The table between the
``<!-- speed:begin -->`` and ``<!-- speed:end -->`` markers is replaced, with the machine it was
measured on, so the README never shows a number this run did not measure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bench_sandbox

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- speed:begin -->", "<!-- speed:end -->"


def main() -> None:
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"{README} has no {BEGIN} ... {END} block")
    machine, _, table = bench_sandbox.table(markdown=True).partition("\n\n")
    block = (f"{BEGIN}\nMeasured by `bench/update_readme.py` on: {machine}.\n\n{table}\n{END}")
    head, rest = text.split(BEGIN, 1)
    README.write_text(head + block + rest.split(END, 1)[1], encoding="utf-8")
    print(block)


if __name__ == "__main__":
    main()
