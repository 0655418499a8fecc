"""A console bound to every address (a container's 0.0.0.0) logs its first-admin link, and
says where it is, with the address a browser on this machine opens: 127.0.0.1, not
0.0.0.0."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule


def test_the_first_admin_link_of_a_wildcard_bind_opens_in_a_browser(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    (tmp_path / "plugins").mkdir()
    app = OmniApp("image", overrides={"data_dir": str(tmp_path / "data"),
                                      "plugins_dir": str(tmp_path / "plugins"),
                                      "console": {"host": "0.0.0.0", "port": 0}})
    module = ConsoleModule()
    app.add_module(module)
    with app:
        assert module.url is not None and module.url.startswith("http://127.0.0.1:")
        said = " ".join(r.getMessage() for r in caplog.records)
        link = re.search(r"open (\S+/setup\?token=\S+) within 24 h", said)
        assert link is not None, said
        assert link[1].startswith(f"{module.url}/setup?token=")
        assert "0.0.0.0" not in said
        page = httpx.get(link[1])
        assert page.status_code == 200 and "first admin" in page.text.lower()
