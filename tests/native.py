"""What a native build's machine code asks of the CPU: code built with ``-march=native`` on a
machine with AVX or AVX-512 dies of SIGILL on any x86-64 machine without them (and under
valgrind, which has no AVX-512). Read from ``objdump``'s listing of the shared object."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

__all__ = ["avx_instructions"]

#: An AVX instruction in objdump's listing: VEX- or EVEX-coded, a v-mnemonic on an xmm, ymm or
#: zmm register (SSE's mnemonics on xmm never begin with v).
_AVX = re.compile(r"\tv[a-z0-9]+\s.*%[xyz]mm\d")


def avx_instructions(path: Path) -> int:
    """How many AVX instructions the shared object at ``path`` holds."""
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)],
                             capture_output=True, text=True, check=True).stdout
    assert ">:" in listing, f"{path}: objdump listed no function"
    return len(_AVX.findall(listing))
