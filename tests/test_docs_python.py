"""Every Python block of the site's pages and the README that is not marked
``<!-- illustrative: reason -->`` runs here: extracted, written to a file and run by
``.venv/bin/python`` in a fresh process in a fresh folder, and what it prints compared with what
the page shows (docs/development.md, "This documentation", says how a page shows it).

The folder is what a reader's is after ``scripts/dev setup``: ``build/plugins/`` holds the
built example plugins (a plugin the page builds itself, as the README's ``hello``, is built
here the way the page's ``omnicore new plugin``/``omnicore build`` commands do). A block that
uses ``app`` without making one runs against a fresh, started ``OmniApp`` (its data in the
folder), with the plugins it calls and does not load (the ``shapes`` component) loaded.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tokenize
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_docs import ROOT, Block, runnable_python_blocks

PYTHON = ROOT / ".venv" / "bin" / "python"
PLUGINS = ROOT / "build" / "plugins"
BLOCKS = runnable_python_blocks()

#: A block that starts with these needs no app of the test's: it makes its own.
_MAKES_APP = re.compile(r"^app\s*=", re.MULTILINE)
_PRELUDE = ('from omnicore import OmniApp\n\napp = OmniApp("docs")\napp.start()\n{loads}'
            "try:\n    exec(compile(open('block.py').read(), 'block.py', 'exec'))\n"
            "finally:\n    app.stop()\n")


def _component(name: str) -> Path:
    from tests.component_fixtures import js_component

    return js_component(name)


#: Plugins a block calls as loaded: the name, and how the test gets one.
_FIXTURES: dict[str, Callable[[], Path]] = {"shapes": lambda: _component("types")}


def runs(page: Path, block: Block) -> bool:
    """Whether ``block`` of ``page`` runs here (it is one of BLOCKS and is Python)."""
    try:
        compile(block.body, f"{page}:{block.line}", "exec")
    except SyntaxError:
        return False
    return (page, block) in BLOCKS


def printed_comments(code: str) -> list[str]:
    """The trailing comments of the block's ``print(...)`` lines: what each prints."""
    shown = []
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if (token.type == tokenize.COMMENT
                and token.line.lstrip().startswith("print(")):
            shown.append(token.string[1:].strip())
    return shown


def _folder(tmp_path: Path, page: Path, code: str, env: dict[str, str]) -> None:
    """Lay out what a reader's checkout has after set-up, as far as ``code`` needs it."""
    if not PLUGINS.is_dir():
        pytest.skip(f"{PLUGINS} is missing: run ./scripts/dev setup (it builds the examples)")
    plugins = tmp_path / "build" / "plugins"
    plugins.mkdir(parents=True)
    for built in PLUGINS.glob("*.wasm"):
        (plugins / built.name).symlink_to(built)
    text = page.read_text(encoding="utf-8")
    for name in sorted(set(re.findall(r"build/plugins/([\w-]+)\.wasm", code))):
        if (plugins / f"{name}.wasm").exists():
            continue
        made = re.search(rf"omnicore new plugin {re.escape(name)} --lang (\w+)", text)
        assert made, f"{page}: the block loads build/plugins/{name}.wasm, which nothing builds"
        done = subprocess.run(
            f"omnicore new plugin {name} --lang {made[1]} && omnicore build {name}",
            shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("page", "block"), BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}:{b.line}" for p, b in BLOCKS])
def test_the_python_block_runs_and_prints_what_the_page_shows(
        page: Path, block: Block, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{PYTHON.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("OMNICORE_CONFIG", None)
    _folder(tmp_path, page, block.body, env)
    (tmp_path / "block.py").write_text(block.body, encoding="utf-8")
    script = "block.py"
    if re.search(r"\bapp\.", block.body) and not _MAKES_APP.search(block.body):
        loads = "".join(f"app.plugins.load({str(tmp_path / f'{name}.wasm')!r})\n"
                        for name in _FIXTURES if f'"{name}"' in block.body)
        for name, get in _FIXTURES.items():
            if f'"{name}"' in block.body:
                (tmp_path / f"{name}.wasm").write_bytes(get().read_bytes())
        (tmp_path / "with_app.py").write_text(_PRELUDE.format(loads=loads), encoding="utf-8")
        script = "with_app.py"
    done = subprocess.run([str(PYTHON), script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    where = f"{page.relative_to(ROOT)}:{block.line}"
    assert done.returncode == 0, f"{where}\n{block.body}\n---\n{done.stdout}\n{done.stderr}"
    if block.shown is not None:
        assert done.stdout == block.shown, f"{where}: printed\n{done.stdout}"
    expected = printed_comments(block.body)
    if expected:
        assert done.stdout.splitlines() == expected, f"{where}: printed\n{done.stdout}"


def test_print_comments_are_read_as_output_and_other_comments_are_not() -> None:
    code = ('x = 1   # a note\nprint(x)   # 1\nprint("a#b")  # a#b\n'
            'call("shapes#centroid")  # not printed\n')
    assert printed_comments(code) == ["1", "a#b"]


def test_there_are_blocks_to_run() -> None:
    assert len(BLOCKS) >= 3, BLOCKS
