"""The documentation site: its references are generated from the code and say something of
everything a user can meet, it builds with ``--strict`` (no broken link or anchor), and every
shell block of its pages either runs (tests/test_readme_commands.py) or says why it cannot, as
does every Python block (they run in tests/test_docs_python.py).

As datasette's tests/test_docs.py: adding a config key, a CLI command or option, a REST
operation, an error or a host function without its text fails here, naming it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_docs", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


# --- the references: generated, and nothing without its text -----------------------------

def test_everything_a_user_meets_has_its_text() -> None:
    assert gen.undocumented() == []


def test_the_check_names_what_has_no_text(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    @click.command("bare")
    @click.option("--quiet")
    def bare(quiet: str) -> None:
        pass

    key = gen.ConfigKey("log.new_key", "string", "x", "OMNICORE_LOG__NEW_KEY", "live", "")
    monkeypatch.setattr(gen, "cli_commands", lambda: [("omnicore bare", bare)])
    monkeypatch.setattr(gen, "config_sections",
                        lambda: [gen.ConfigSection("log", "``log.*``.", [key])])
    monkeypatch.setattr(gen, "rest_operations", lambda: [
        ("get", "/api/v1/new", {"summary": "", "responses": {"200": {"description": ""}}})])
    missing = "\n".join(gen.undocumented())
    assert "CLI command omnicore bare: no help" in missing
    assert "CLI option omnicore bare --quiet: no help" in missing
    assert "config key log.new_key: no description" in missing
    assert "REST operation GET /api/v1/new: no summary" in missing


def test_an_error_outside_the_tree_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # A made-up class beside the real ones (a real subclass of OmniError would stay among
    # its __subclasses__ for the rest of the session).
    undrawn = type("Undrawn", (Exception,), {"__module__": "omnicore.made_up"})
    real = gen.all_error_classes()
    monkeypatch.setattr(gen, "all_error_classes", lambda: real | {undrawn})
    assert "error omnicore.made_up.Undrawn: not drawn in the tree of omnicore.errors' " \
        "docstring" in gen.undocumented()


def test_every_config_key_is_in_its_reference() -> None:
    from omnicore.config.schema import LIMIT_KEYS

    page = gen.config_md()
    keys = [k for section in gen.config_sections() for k in section.keys]
    assert len(keys) > 80
    for key in keys:
        assert f"`{key.key}`" in page and f"`{key.env}`" in page, key.key
    for limit in LIMIT_KEYS:
        assert f"`sandbox.limits.{limit}`" in page
    # what reloads live and what waits for a restart, as omnicore.app_reload says
    by_key = {k.key: k for k in keys}
    assert by_key["log.level"].applies == "live"
    assert by_key["storage.url"].applies == "restart"
    assert by_key["capabilities.jobs.workers"].applies == "restart"
    assert by_key["plugins.<name>.grants"].applies == "live"
    assert by_key["console.port"].env == "OMNICORE_CONSOLE__PORT"
    assert by_key["sandbox.limits.timeout_ms"].default == "1000"


def test_every_cli_command_and_option_is_in_its_reference() -> None:
    import click

    page = gen.cli_md()
    commands = gen.cli_commands()
    assert len(commands) > 60
    for name, cmd in commands:
        assert f"## `{name}`" in page, name
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert any(opt in page for opt in param.opts), (name, param.opts)


def test_every_rest_operation_is_in_its_reference() -> None:
    page = gen.rest_md()
    operations = gen.rest_operations()
    assert len(operations) > 50
    for method, path, op in operations:
        assert f"### `{method.upper()} {path}`" in page
        assert op["summary"] in page


def test_every_error_and_status_is_in_its_reference() -> None:
    page = gen.errors_md()
    types = gen.error_types()
    assert {e.cls for e in types} >= gen.all_error_classes()
    for error in types:
        assert f"`{error.name}`" in page
    assert "| 404 | `NotFound` |" in page and "| 507 | `DiskFull` |" in page
    assert "| `-5` | `UNAVAILABLE` |" in page
    status = {e.name: e.status for e in types}
    assert status["PluginNotFound"] == 404 and status["storage.errors.StorageFull"] == 507


def test_every_host_function_is_in_its_reference() -> None:
    page = gen.host_functions_md()
    caps = gen.host_functions()
    assert {cap.name for cap, _ in caps} >= {"log", "kv", "http", "sql", "redis", "mcp"}
    for cap, rows in caps:
        assert f"## `{cap.namespace}`" in page
        for fn in cap.functions:
            assert f"| `{fn.name}` |" in page
            assert rows[fn.name][2] and _flat(rows[fn.name][2])[:40] in _flat(page), fn.name


def _flat(text: str) -> str:
    return " ".join(text.split()).replace("\\|", "|")


# --- the site -----------------------------------------------------------------------------

def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """No broken link or anchor, no page missing from the nav, the references generated."""
    if importlib.util.find_spec("mkdocs") is None or \
            importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed (the dev extras have them: "
                    ".venv/bin/pip install -e '.[dev]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([str(VENV_BIN / "mkdocs"), "build", "--strict", "--site-dir",
                           str(site)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for page in ("index.html", "quickstart.html", "guides/databases.html",
                 "reference/cli.html", "reference/configuration.html",
                 "reference/rest-api.html", "reference/errors.html",
                 "reference/host-functions.html", "operations/upgrades.html",
                 "specs/abi.html", "sdk/rust.html", "changelog.html"):
        assert (site / page).is_file(), page
    # Generated at build time, from the code and from the README's speed table.
    assert "omnicore workflows approve" in (site / "reference/cli.html").read_text()
    assert "OMNICORE_CONSOLE__PORT" in (site / "reference/configuration.html").read_text()
    assert "speed:readme" not in (site / "reference/performance.html").read_text()
    # Search works from the file system with no network: its index is a script of the site,
    # and so is the Web Worker shim (the offline plugin would load it from unpkg.com).
    assert (site / "search" / "search_index.js").is_file()
    home = (site / "index.html").read_text()
    assert 'src="assets/javascripts/iframe-worker-shim.js"' in home
    assert not re.findall(r'<(?:script|link)[^>]+(?:src|href)="https?://', home)


def test_search_weighs_a_guide_above_a_specification() -> None:
    # tests/test_docs_browser.py asks the built site's search; this is the rule behind it.
    assert gen.search_boost("guides/plugin-folder.md") == gen.search_boost("quickstart.md") == 2
    assert gen.search_boost("guides/capabilities/memory.md") == 2
    for generated in ("specs/host.md", "reference/cli.md", "sdk/go.md", "changelog.md"):
        boost = gen.search_boost(generated)
        assert boost is not None and boost < 1, generated
    assert gen.search_boost("index.md") is None


def test_the_home_page_reaches_the_walkthroughs_in_two_clicks() -> None:
    """A new user finds the database walk-through, the CLI reference and the upgrade
    procedure from the home page: each is linked from it, or from a page it links to."""
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    one_click = set(re.findall(r"\]\(([\w/.-]+\.md)", home))
    two_clicks = set(one_click)
    for page in one_click:
        text = (ROOT / "docs" / page).read_text(encoding="utf-8") \
            if (ROOT / "docs" / page).is_file() else ""
        base = Path(page).parent
        two_clicks |= {(base / link).as_posix()
                       for link in re.findall(r"\]\(([\w/.-]+\.md)", text)}
    normal = {os.path.normpath(p) for p in two_clicks}
    for target in ("guides/databases.md", "reference/cli.md", "operations/upgrades.md"):
        assert target in normal, target


# --- examples that cannot rot -------------------------------------------------------------

#: Shell-like fence languages that do not run: each needs a reason.
_SHELLS = ("console", "shell", "bash", "zsh", "shell-session")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w-]*)[^\n]*$",
                    re.MULTILINE)
_ILLUSTRATIVE = re.compile(r"<!--\s*illustrative:\s*(?P<reason>[^>]*?)\s*-->\s*$")
#: A shell block another test runs, in order with the page's other such blocks (the scale-out
#: guide: tests/deploy/test_scale_out_guide.py); the test named must exist.
_RUNS_IN = re.compile(r"<!--\s*runs in:\s*(?P<test>\S+\.py)\s*-->\s*$")


class Block(NamedTuple):
    """A top-level fenced block of a page: its first line, language, the line before it (where
    an ``<!-- illustrative: reason -->`` marker goes), its text, and the text of a ``text``
    block that follows it with only blank lines between (the output the page shows)."""

    line: int
    lang: str
    before: str
    body: str
    shown: str | None


def fenced_blocks(text: str) -> list[Block]:
    """Every top-level fenced block of ``text`` (a block inside a longer fence is its text)."""
    found: list[tuple[int, str, str, int, int]] = []  # line, lang, before, body start, end
    lines = text.splitlines()
    open_fence: str | None = None
    for number, line in enumerate(lines):
        match = _FENCE.match(line)
        if match is None:
            continue
        if open_fence is None:
            open_fence = match["fence"]
            before = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
            found.append((number + 1, match["lang"], before, number + 1, len(lines)))
        elif match["fence"].startswith(open_fence) and not match["lang"]:
            open_fence = None
            start_line, lang, before, start, _ = found[-1]
            found[-1] = (start_line, lang, before, start, number)
    blocks = []
    for index, (first, lang, before, start, end) in enumerate(found):
        body = "\n".join(lines[start:end]) + "\n"
        shown = None
        after = found[index + 1] if index + 1 < len(found) else None
        if (after is not None and after[1] == "text"
                and not any(lines[i].strip() for i in range(end + 1, after[0] - 1))):
            shown = "\n".join(lines[after[3]:after[4]]) + "\n"
        blocks.append(Block(first, lang, before, body, shown))
    return blocks


def shell_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, language, the line before it) of every top-level fenced block of ``text``."""
    return [(block.line, block.lang, block.before) for block in fenced_blocks(text)]


#: Python fence languages: each block runs (tests/test_docs_python.py) or says why not.
_PYTHONS = ("python", "py", "python3")


def illustrative(block: Block) -> str | None:
    """The reason of the block's ``<!-- illustrative: reason -->`` marker, if it has one."""
    marked = _ILLUSTRATIVE.search(block.before)
    return marked["reason"] if marked else None


def python_blocks(page: Path) -> list[Block]:
    """The page's Python blocks, marked illustrative or not."""
    return [b for b in fenced_blocks(page.read_text(encoding="utf-8")) if b.lang in _PYTHONS]


def _pages() -> list[Path]:
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shell_block_runs_or_says_why_not(page: Path) -> None:
    """``sh`` blocks run (tests/test_readme_commands.py); ``console``, ``shell`` and ``bash``
    blocks are illustrative, with ``<!-- illustrative: reason -->`` on the line before, or
    run by the test a ``<!-- runs in: tests/FILE.py -->`` there names."""
    unmarked = []
    for line, lang, before in shell_blocks(page.read_text(encoding="utf-8")):
        if lang in _SHELLS:
            runs_in = _RUNS_IN.search(before)
            if runs_in is not None and (ROOT / runs_in["test"]).is_file():
                continue
            marked = _ILLUSTRATIVE.search(before)
            if marked is None or len(marked["reason"]) < 10:
                unmarked.append(f"{page.relative_to(ROOT)}:{line}: a {lang} block without "
                                "<!-- illustrative: reason --> before it (or make it sh, "
                                "and it runs in tests/test_readme_commands.py)")
    assert not unmarked, "\n".join(unmarked)


def runnable_python_blocks() -> list[tuple[Path, Block]]:
    """Every Python block of the site's pages and the README not marked illustrative: each
    runs in tests/test_docs_python.py."""
    return [(page, block) for page in _pages() for block in python_blocks(page)
            if illustrative(block) is None]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_runs_or_says_why_not(page: Path) -> None:
    """A ``python`` block runs in tests/test_docs_python.py unless the line before it is
    ``<!-- illustrative: reason -->`` with a reason."""
    short = [f"{page.relative_to(ROOT)}:{b.line}: an illustrative python block with no reason"
             for b in python_blocks(page)
             if (reason := illustrative(b)) is not None and len(reason) < 10]
    assert not short, "\n".join(short)
    from tests.test_docs_python import runs

    runnable = [b for b in python_blocks(page) if illustrative(b) is None]
    missed = [f"{page.relative_to(ROOT)}:{b.line}: a python block neither run by "
              "tests/test_docs_python.py nor marked <!-- illustrative: reason -->"
              for b in runnable if not runs(page, b)]
    assert not missed, "\n".join(missed)


#: A block copied from a file a test compiles and runs: ``<!-- excerpt of: PATH -->`` on the
#: line before it; the block must still be in that file, as it is (tabs and all).
_EXCERPT = re.compile(r"<!--\s*excerpt of:\s*(?P<path>\S+)\s*-->\s*$")


def _pages_and_sdk_readmes() -> list[Path]:
    """The site's own pages, the README, and the SDK READMEs (the site's SDK reference)."""
    return [*_pages(), *sorted((ROOT / "sdk").glob("*/README.md"))]


@pytest.mark.parametrize("page", _pages_and_sdk_readmes(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_excerpt_is_still_in_its_file(page: Path) -> None:
    """A page's excerpt of a test cannot drift from the test: the Go SDK's page once showed a
    test calling a ``ptr`` helper no file defined."""
    drifted = []
    for block in fenced_blocks(page.read_text(encoding="utf-8")):
        marked = _EXCERPT.search(block.before)
        if marked is None:
            continue
        source = ROOT / marked["path"]
        if not source.is_file() or block.body not in source.read_text(encoding="utf-8"):
            drifted.append(f"{page.relative_to(ROOT)}:{block.line}: not in {marked['path']} "
                           "as the page shows it")
    assert not drifted, "\n".join(drifted)


def _go_test_files_that_run() -> set[Path]:
    """The Go tests tests/sdk/test_go.py runs: the SDK's and every example's."""
    return {*(ROOT / "sdk" / "go").glob("*_test.go"), *ROOT.glob("plugins/*/go/*_test.go")}


@pytest.mark.parametrize("page", _pages_and_sdk_readmes(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_go_test_a_page_shows_is_an_excerpt_of_one_that_runs(page: Path) -> None:
    """A ``go`` block that defines a test is an excerpt of a test file tests/sdk/test_go.py
    compiles and runs, so every name it uses exists and what it asserts holds."""
    running = _go_test_files_that_run()
    loose = []
    for block in fenced_blocks(page.read_text(encoding="utf-8")):
        if block.lang != "go" or not re.search(r"^func Test\w*\(t \*testing\.T\)", block.body,
                                               re.MULTILINE):
            continue
        marked = _EXCERPT.search(block.before)
        if marked is None or (ROOT / marked["path"]) not in running:
            loose.append(f"{page.relative_to(ROOT)}:{block.line}: a Go test that is not an "
                         "<!-- excerpt of: PATH --> of an SDK or example test file")
    assert not loose, "\n".join(loose)


def test_the_excerpt_check_sees_a_block_that_drifted(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- excerpt of: plugins/greeter/go/main_test.go -->\n```go\n"
                    "func TestGreet(t *testing.T) { _ = ptr(\"Ada\") }\n```\n")
    block, = fenced_blocks(page.read_text())
    marked = _EXCERPT.search(block.before)
    assert marked is not None and marked["path"] == "plugins/greeter/go/main_test.go"
    assert block.body not in (ROOT / marked["path"]).read_text()


def test_the_python_block_reader_sees_markers_and_the_output_shown() -> None:
    text = ("<!-- illustrative: needs a PostgreSQL server -->\n```python\nimport x\n```\n\n"
            "```python\nprint(1)\n```\n\n```text\n1\n```\n\n"
            "````markdown\n```python\n```\n````\n")
    blocks = fenced_blocks(text)
    assert [(b.lang, illustrative(b)) for b in blocks] == [
        ("python", "needs a PostgreSQL server"), ("python", None), ("text", None),
        ("markdown", None)]
    assert blocks[0].body == "import x\n" and blocks[0].shown is None
    assert blocks[1].body == "print(1)\n" and blocks[1].shown == "1\n"
    assert blocks[3].body == "```python\n```\n"


def test_the_block_reader_sees_markers_and_nested_fences() -> None:
    text = ("<!-- illustrative: needs a host -->\n```console\n$ x\n```\n\n"
            "````markdown\n```console\n```\n````\n\n```sh\nomnicore info\n```\n")
    assert [(lang, bool(_ILLUSTRATIVE.search(before)))
            for _, lang, before in shell_blocks(text)] == [
        ("console", True), ("markdown", False), ("sh", False)]


def test_the_readme_links_only_to_what_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"^[a-z]+:", target):
            assert (ROOT / target).exists(), target


# --- scripts/dev docs ---------------------------------------------------------------------

_RECORD = '#!/usr/bin/env bash\necho "$(basename "$0") $*" >> "{log}"\n'


@pytest.fixture
def dev(tmp_path: Path) -> SimpleNamespace:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "dev", root / "scripts" / "dev")
    log = tmp_path / "calls.log"
    for tool in ("scripts/setup-toolchains.sh", ".venv/bin/mkdocs", ".venv/bin/python",
                 ".venv/bin/omnicore"):
        path = root / tool
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_RECORD.replace("{log}", str(log)))
        path.chmod(0o755)
    return SimpleNamespace(root=root, log=log)


def _dev(dev: Any, *args: str) -> list[str]:
    dev.log.unlink(missing_ok=True)
    done = subprocess.run(["bash", str(dev.root / "scripts" / "dev"), "docs", *args],
                          cwd=dev.root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dev.log.read_text().splitlines()


def test_scripts_dev_docs_builds_strictly_and_serves(dev: Any) -> None:
    assert _dev(dev) == ["mkdocs build --strict"]
    assert _dev(dev, "--serve") == ["mkdocs serve --strict"]
    assert _dev(dev, "--serve", "-a", "0.0.0.0:8001") == ["mkdocs serve --strict -a 0.0.0.0:8001"]
