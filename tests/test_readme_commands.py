"""Every shell command the documentation and the scaffold hints print runs, so none can drift.

The documents are the README, every page of the site (``docs/``) and the SDK READMEs. Each
document's fenced ``sh`` blocks run in order, each block as one bash script (a ``cd`` lasts to
the end of its block, as in a terminal), in a fresh workspace that looks like the checkout a
reader has: ``.venv`` and ``sdk/`` linked, ``plugins/`` copied, and on PATH only ``omnicore``
(Go lives in the venv, so a page that runs ``go`` must say how to get it). A document that
names ``build/demo`` gets the demo app with the example greeters its commands name, and one
that names ``myapp`` without creating it gets that app. The commands that cannot run in a
test are in :data:`NOT_RUN`, each with the reason; a shell block that cannot run at all is not
an ``sh`` block but an illustrative one, with its reason (tests/test_docs.py holds the pages to
that).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
OMNICORE = VENV_BIN / "omnicore"
SDK_DOCS = ["sdk/rust/README.md", "sdk/go/README.md", "sdk/js/README.md", "sdk/c/README.md",
            "sdk/python/README.md"]

#: Commands (line prefixes) a test cannot run, and why.
NOT_RUN = {
    "./scripts/dev demo": "serves forever; CI runs its set-up half (`./scripts/dev setup`)",
    "./scripts/dev test": "is CI itself; a test cannot run the suite it belongs to",
    ".venv/bin/pytest": "runs a part of this very test suite, which CI runs anyway",
    "curl ": "talks to a running host's console with a user's token (tests/console does)",
    "OMNICORE_TOKEN=": "calls a remote host with a console token (tests/console does)",
    ".venv/bin/omnicore logs ": "reads a running host's log (tests/console/test_cli_remote.py)",
    ".venv/bin/omnicore dev ": "builds and serves until stopped (tests/cli/test_cli_dev.py)",
}

_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)


def site_pages() -> list[str]:
    """The site's pages that have ``sh`` blocks, as paths from the checkout's root."""
    return sorted(str(page.relative_to(ROOT)) for page in (ROOT / "docs").rglob("*.md")
                  if _BLOCK.search(page.read_text(encoding="utf-8")))


DOCS = ["README.md", *site_pages(), *SDK_DOCS]


def sh_blocks(doc: Path) -> list[str]:
    """The doc's ``sh`` blocks, continuation lines joined, NOT_RUN lines dropped."""
    blocks = []
    for match in _BLOCK.finditer(doc.read_text(encoding="utf-8")):
        lines = match[1].replace("\\\n", " ").splitlines()
        kept = [line for line in lines if not line.startswith(tuple(NOT_RUN))]
        if any(line.strip() and not line.lstrip().startswith("#") for line in kept):
            blocks.append("\n".join(kept))
    return blocks


def commands(text: str) -> list[str]:
    """The omnicore commands printed in ``text``, one a line, after any label (``build it:``)."""
    found = (re.search(r"(?:^|\s)((?:\.venv/bin/)?omnicore\s.*)$", line)
             for line in text.splitlines())
    return [match[1].strip() for match in found if match]


def workspace(tmp: Path, module_cache: Path) -> dict[str, str]:
    """A checkout-like folder at ``tmp``; returns the environment to run commands in."""
    (tmp / ".venv").symlink_to(ROOT / ".venv")
    (tmp / "sdk").symlink_to(ROOT / "sdk")
    for folder in ("plugins", "examples"):  # the sources the pages build
        shutil.copytree(ROOT / folder, tmp / folder,
                        ignore=shutil.ignore_patterns("target", "node_modules", "*.wasm"))
    only = tmp / ".path"
    only.mkdir()
    (only / "omnicore").symlink_to(OMNICORE)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and Path(p).resolve() != VENV_BIN.resolve()]
    return {**os.environ, "PATH": os.pathsep.join([str(only), *path]),
            # warm caches shared with the build; nothing about the commands changes
            "CARGO_TARGET_DIR": str(ROOT / "build" / "cargo-target"),
            # the run's compiled modules: an 18 MB Python component compiles once, not per doc
            "OMNICORE_CACHE_DIR": str(module_cache),
            "OMNICORE_LOG__FORMAT": "text", "CI": os.environ.get("CI", ""),
            # values the docs take from the reader's shell
            "GITHUB_TOKEN": "ghp_example-token-for-the-readme-test"}


def run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_the_extraction_finds_the_commands_and_the_allow_list_is_used() -> None:
    found = {doc: sh_blocks(ROOT / doc) for doc in ["README.md", *SDK_DOCS]}
    assert all(found.values()), [doc for doc, blocks in found.items() if not blocks]
    text = "\n".join((ROOT / doc).read_text() for doc in DOCS)
    assert "\n./scripts/dev demo" in text  # the allow-list matches lines as printed
    assert any("omnicore test" in block for block in found["sdk/go/README.md"])
    # The site's guides are read: the workflow walk-through and the plugin author's commands.
    assert "docs/guides/workflows.md" in DOCS and "docs/quickstart.md" in DOCS
    assert any("omnicore workflows approve" in block
               for block in sh_blocks(ROOT / "docs/guides/workflows.md"))


@pytest.mark.parametrize("doc", DOCS)
def test_every_sh_block_of_the_doc_runs(doc: str, tmp_path: Path, module_cache: Path) -> None:
    env = workspace(tmp_path, module_cache)
    blocks = sh_blocks(ROOT / doc)
    commands_text = "\n".join(blocks)
    setup = []
    if "build/demo" in commands_text:
        # What `./scripts/dev setup` leaves and the quick start's second terminal uses: the
        # demo app with its config and the example greeters the commands name (all eight
        # built and compiled here took a minute, the Ruby and Python ones most of it; CI's
        # set-up builds every example, and tests/test_demo.py loads them all).
        named = sorted(set(re.findall(r"\bgreeter-(\w+)", commands_text)))
        setup += ["omnicore new build/demo", "cp plugins/demo.yaml build/demo/omnicore.yaml",
                  *(f"omnicore build plugins/greeter/{lang} --app build/demo" for lang in named)]
    if re.search(r"\bmyapp\b", commands_text) and "omnicore new myapp" not in commands_text:
        setup.append("omnicore new myapp")  # an app the page's commands take as made
    if setup:
        made = run(" && ".join(setup), tmp_path, env)
        assert made.returncode == 0, made.stdout + made.stderr
    for block in blocks:
        done = run(block, tmp_path, env)
        assert done.returncode == 0, f"{doc}:\n{block}\n---\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("lang", ["rust", "go", "js", "ts", "c", "python"])
def test_the_scaffold_hints_run(lang: str, tmp_path: Path, module_cache: Path) -> None:
    env = workspace(tmp_path, module_cache)
    # Python's is the guide's name: one build and one compile of that component serve both.
    name = "hello-py" if lang == "python" else "hello"
    created = run(f"omnicore new plugin {name} --lang {lang}", tmp_path, env)
    assert created.returncode == 0, created.stderr
    hints = commands(created.stdout)
    assert [h.split()[1] for h in hints] == ["build", "call", "test"]
    for hint in hints:
        done = run(hint, tmp_path, env)
        assert done.returncode == 0, f"{hint}\n---\n{done.stdout}\n{done.stderr}"
        if hint.split()[1] == "call":
            assert json.loads(done.stdout)["message"].endswith(", Ada!")
            # -v: the plugin's own log line of the call, on stderr.
            assert "[info]" in done.stderr and "Ada" in done.stderr, done.stderr


def test_the_scaffolds_name_only_documents_that_exist(tmp_path: Path,
                                                       module_cache: Path) -> None:
    env = workspace(tmp_path, module_cache)
    for lang in ("rust", "go", "js", "ts", "c", "python", "ruby"):
        assert run(f"omnicore new plugin p-{lang} --lang {lang}", tmp_path, env).returncode == 0
        project = tmp_path / f"p-{lang}"
        assert (project / ".gitignore").is_file(), lang
        for file in project.rglob("*"):
            if file.is_file():
                for ref in re.findall(r"[\w./-]+\.md\b", file.read_text()):
                    assert (ROOT / ref).is_file(), f"{file} refers to {ref}"
