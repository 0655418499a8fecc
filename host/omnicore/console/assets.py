"""Where the console's front end (templates and static assets) is found.

Its source is the top-level ``web/`` folder of the checkout. A wheel carries a copy as
``omnicore/console/web`` (``setup.py`` puts it there, as it does ``sdk/``); a source
checkout and an editable install, which imports from the checkout, read ``web/`` in place.
The wheel's copy wins when both exist.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["web_dir"]

_PACKAGED = Path(__file__).resolve().parent / "web"
_CHECKOUT = Path(__file__).resolve().parents[3] / "web"


def web_dir() -> Path:
    """The folder holding ``templates/`` and ``static/``."""
    return _PACKAGED if (_PACKAGED / "templates").is_dir() else _CHECKOUT
