"""Every example plugin's own tests pass under ``omnicore test``, in every language whose
examples carry tests: what a new user runs first after copying one. Rust's and Go's run in
test_rust.py and test_go.py (with their SDKs' own); these are the rest, found rather than
listed, so an example that gains tests is run without anyone adding it here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from omnicore.toolchains import discover, language_for, unit_tests

ROOT = Path(__file__).resolve().parents[2]

#: The files a language's ``omnicore test`` runs (toolchains/<language>.py's unit_tests).
TEST_FILES = {
    "python": ("test_*.py", "tests/test_*.py"),
    "ruby": ("test/*_test.rb", "tests/*_test.rb"),
    "c": ("tests/*.c",),
    "assemblyscript": ("*.test.ts",),
    "js": ("*.test.js", "*.test.ts"),
}


def _examples() -> list[str]:
    found = []
    for project in discover(ROOT / "plugins"):
        patterns = TEST_FILES.get(language_for(project), ())
        if any(next(project.glob(p), None) for p in patterns):
            found.append(str(project.relative_to(ROOT)))
    return sorted(found)


@pytest.mark.parametrize("example", _examples())
def test_the_examples_own_tests_pass(example: str) -> None:
    run = unit_tests(ROOT / example)
    done = subprocess.run(run.argv, env=run.env, cwd=run.cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_examples_in_several_languages_carry_tests() -> None:
    # The discovery above finds something: a renamed test folder would otherwise empty it.
    assert {language_for(ROOT / e) for e in _examples()} >= {"python", "ruby", "c",
                                                              "assemblyscript"}
