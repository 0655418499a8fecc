"""Imports no capability but log: needs no grant."""

from omnicore_plugin import handler, log


@handler
def hello(data: bytes) -> bytes:
    log.info("hello")
    return data.upper()
