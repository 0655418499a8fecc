"""The documentation site looked at in a real browser (Debian's chromium through Playwright):
the home page, a guide and a reference page at a laptop's 1366 px and a phone's 390 px, none
wider than its window, each with its screenshot in build/docs-screenshots/. Then search, from
the file system with no server and no network."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "docs-screenshots"
PAGES = ("index.html", "guides/databases.html", "reference/cli.html")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "mkdocs"), "build", "--strict",
                           "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _overflowing(page: Page) -> list[str]:
    """The page's width past its window, and each visible element of the article that ends
    past the window's right edge without a scrolling box of its own around it (a wide table
    or code block scrolls inside its box: that is not an overflow of the page)."""
    return list(page.evaluate("""() => {
        const out = [], w = window.innerWidth;
        if (document.documentElement.scrollWidth > w)
            out.push(`page ${document.documentElement.scrollWidth} > ${w}`);
        const scrolls = el => {
            for (let p = el.parentElement; p; p = p.parentElement) {
                const o = getComputedStyle(p).overflowX;
                if (o === 'auto' || o === 'scroll' || o === 'hidden') return true;
            }
            return false;
        };
        for (const el of document.querySelectorAll('article *')) {
            const r = el.getBoundingClientRect();
            if (r.width && r.height && r.right > w + 1 && !scrolls(el))
                out.push(`${el.tagName.toLowerCase()} "${(el.textContent || '').slice(0, 40)}"`
                         + ` ends at ${Math.round(r.right)} > ${w}`);
        }
        return out.slice(0, 10);
    }"""))


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
def test_pages_fit_the_window_at_laptop_and_phone_widths(
        site: Path, browser: Browser, width: int, height: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        for name in PAGES:
            page.goto((site / name).as_uri())
            page.wait_for_selector("article h1")
            assert _overflowing(page) == [], (name, width)
            shot = SHOTS / f"{name.replace('/', '-').removesuffix('.html')}-{width}.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 10_000  # a page drawn, not a blank one
    finally:
        page.close()


def test_search_finds_a_page_from_the_file_system(site: Path,
                                                  browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto((site / "index.html").as_uri())
        page.fill("input[data-md-component=search-query]", "statement_timeout_ms")
        hit = page.wait_for_selector(".md-search-result__item a", timeout=30_000)
        assert hit is not None
        page.screenshot(path=str(SHOTS / "search-1366.png"))
        assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
    finally:
        page.close()


#: A question a new user asks, and the section that answers it: a guide, not a specification
#: or the memory capability (Material's search weighs pages by where they live,
#: scripts/gen_docs.py SEARCH_BOOST).
QUESTIONS = {
    "limit a plugin's memory": "guides/plugin-folder.html",
    "memory limit": "guides/plugin-folder.html",
    "statement_timeout_ms": "guides/databases.html",
}


def test_search_answers_a_question_with_a_guide_first(site: Path, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    try:
        page.goto((site / "index.html").as_uri())
        box = "input[data-md-component=search-query]"
        for question, answer in QUESTIONS.items():
            page.fill(box, "")
            page.type(box, question)
            first = page.wait_for_selector(f".md-search-result__item > a[href*='{answer}']",
                                           timeout=30_000)
            assert first is not None
            hrefs = page.eval_on_selector_all(".md-search-result__item > a",
                                              "es => es.map(e => e.getAttribute('href'))")
            assert answer in hrefs[0], f"{question!r}: first {hrefs[0]}, then {hrefs[1:4]}"
            assert not any("/specs/" in h for h in hrefs[:2]), (question, hrefs[:4])
        page.screenshot(path=str(SHOTS / "search-limits-1366.png"))
    finally:
        page.close()
