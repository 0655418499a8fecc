"""omnicore's folder in the user's cache, one rule for every part that keeps something there:
the build tools' caches (``toolchains/locations.py``) and a bare file's ``omnicore call``
(its compiled modules), which must not import the build tools to find it (issue 63)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["user_cache_dir", "user_cache_home"]


def user_cache_home() -> Path | None:
    """The user's cache folder: ``$XDG_CACHE_HOME``, else ``$HOME/.cache``; None with
    neither (the rule of Go's ``os.UserCacheDir``, so omnicore and a hand-run ``go`` agree)."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"])
    if os.environ.get("HOME"):
        return Path(os.environ["HOME"]) / ".cache"
    return None


def user_cache_dir() -> Path:
    """omnicore's folder in the user's cache (``~/.cache/omnicore``); without HOME, the
    account's home as the password database names it."""
    return (user_cache_home() or Path.home() / ".cache") / "omnicore"
