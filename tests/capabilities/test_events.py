"""omnicore:events (specs/abi.md §4.8): the plugins' door onto app.subscriptions, its topic
grammar, grant patterns and the statuses a refused publish answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from omnicore.app import OmniApp
from tests.event_fixtures import events_app, events_wasm, pub


@pytest.fixture
def ev_app(make_app: Callable[..., OmniApp]) -> Iterator[OmniApp]:
    app = events_app(make_app)
    yield app
    app.stop(grace=1)


def test_bad_publishes_get_statuses(ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("src"), grants={"kv": {}, "events": {"publish": ["ok.*"]}})
    assert pub(ev_app, "src", "") == -3
    assert pub(ev_app, "src", "has space") == -3
    assert pub(ev_app, "src", "x" * 201) == -3
    assert pub(ev_app, "src", "other") == -2                 # not in the grant's patterns
    assert pub(ev_app, "src", "ok.big", b"x" * (64 * 1024 + 1)) == -6
    assert pub(ev_app, "src", "ok.fine") == 0
