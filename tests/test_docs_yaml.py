"""Every YAML the docs show passes the product's own reader (issue 61, item 3): a block with a
key stated twice fails here, as it would fail the host it is copied into. The YAML a shell
block writes through a here-document counts too, and no shell block appends to a YAML file:
the scale-out guide once appended a second top-level ``plugins:`` to ``omnicore.yaml``, which
(before the reader refused it) silently dropped every grant of the first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from omnicore import yamlfile
from tests.test_docs import ROOT, _pages, fenced_blocks

_YAMLS = ("yaml", "yml")
_SHELLS = ("console", "shell", "bash", "zsh", "shell-session", "sh")
#: ``cat > FILE.yaml <<'EOF'`` ... ``EOF``: the target and the delimiter.
_HEREDOC = re.compile(r"(?P<target>\S+\.ya?ml)\s*<<-?\s*['\"]?(?P<end>\w+)['\"]?\s*$"
                      r"|<<-?\s*['\"]?(?P<end2>\w+)['\"]?\s*>\s*(?P<target2>\S+\.ya?ml)\s*$")
#: A redirection that appends to a YAML file (``>> omnicore.yaml``, ``tee -a x.yml``).
_APPEND = re.compile(r">>\s*\S+\.ya?ml\b|\btee\s+(?:-\w*a\w*|--append)\s+\S+\.ya?ml\b")


def heredocs(body: str) -> list[tuple[int, str, str]]:
    """(line in the block, target file, text) of every here-document writing a YAML file."""
    lines = body.splitlines()
    found = []
    for i, line in enumerate(lines):
        match = _HEREDOC.search(line)
        if match is None:
            continue
        end = match["end"] or match["end2"]
        target = match["target"] or match["target2"]
        stop = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == end),
                    len(lines))
        found.append((i + 1, target, "\n".join(lines[i + 1:stop]) + "\n"))
    return found


def _yaml_of(page: Path) -> list[tuple[str, str]]:
    """(where, text) of each YAML the page shows: yaml blocks, and here-documents of shell
    blocks that write a ``.yaml`` file."""
    rel = page.relative_to(ROOT)
    out = []
    for block in fenced_blocks(page.read_text(encoding="utf-8")):
        if block.lang in _YAMLS:
            out.append((f"{rel}:{block.line}", block.body))
        elif block.lang in _SHELLS:
            out += [(f"{rel}:{block.line + n} ({target})", text)
                    for n, target, text in heredocs(block.body)]
    return out


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_the_docs_show_passes_the_strict_reader(page: Path) -> None:
    refused = {}
    for where, text in _yaml_of(page):
        try:
            list(yamlfile.load_all(text, where))
        except yaml.YAMLError as exc:  # a repeated key, or YAML a reader cannot read at all
            refused[where] = " ".join(str(exc).split())
    assert refused == {}


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shell_block_appends_to_a_yaml_file(page: Path) -> None:
    # Appending a section the file may already hold states its key twice: say how to merge
    # (edit the section, or show the whole merged block) instead.
    rel = page.relative_to(ROOT)
    appends = [f"{rel}:{block.line + n}: {line.strip()}"
               for block in fenced_blocks(page.read_text(encoding="utf-8"))
               if block.lang in _SHELLS
               for n, line in enumerate(block.body.splitlines(), 1) if _APPEND.search(line)]
    assert appends == []


def test_the_docs_show_yaml_and_the_reader_sees_it() -> None:
    shown = [where for page in _pages() for where, _ in _yaml_of(page)]
    assert len(shown) >= 10
    assert any("(build/demo/workflows/hello.yaml)" in where for where in shown)


def test_the_checks_see_a_repeated_key_a_heredoc_and_an_append() -> None:
    body = ("cat > app/omnicore.yaml <<'EOF'\nplugins:\n  a: {}\nplugins:\n  b: {}\nEOF\n"
            "echo done\n")
    [(line, target, text)] = heredocs(body)
    assert (line, target) == (1, "app/omnicore.yaml")
    with pytest.raises(yamlfile.DuplicateKeyError, match="'plugins' in x: on line 1 and again "
                                                         "on line 3"):
        yamlfile.load(text, "x")
    assert heredocs("cat <<EOF > w.yml\na: 1\nEOF\n") == [(1, "w.yml", "a: 1\n")]
    assert _APPEND.search("cat >> /tmp/host-a/omnicore.yaml <<'YAML'")
    assert _APPEND.search("echo x | tee -a omnicore.yml")
    assert not _APPEND.search("cat > omnicore.yaml <<'YAML'")
