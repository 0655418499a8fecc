"""counter-python's handlers under the SDK's test host: `omnicore test plugins/counter/python`."""

import json

import plugin  # noqa: F401 - defines the handlers
from omnicore_plugin.testing import TestHost


def test_count_starts_at_the_configured_start_and_resets():
    with TestHost(config={"start": 10}) as host:
        assert json.loads(host.call("count", b"")) == {"count": 11}
        assert json.loads(host.call("count", b'{"by": 5}')) == {"count": 16}
        assert json.loads(host.call("reset")) == {"count": 10}
        assert "count" not in host.kv
