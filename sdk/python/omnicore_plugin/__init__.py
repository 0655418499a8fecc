"""omnicore's Python SDK: write a plugin in Python, build it into a WebAssembly component.

    from omnicore_plugin import handler, json_handler
    from omnicore_plugin import kv, log

    @handler
    def greet(name: bytes) -> str:
        log.info("greeting")
        return "Hello, " + name.decode()

A handler takes the input bytes and returns bytes, a str (sent as UTF-8) or None (no
output); ``@json_handler`` parses its input as JSON (empty input is None) and sends what it
returns as JSON. An exception a handler raises fails the call (the host raises GuestError
with its text). The capability modules (:mod:`.log`, :mod:`.config`, :mod:`.kv`) call the
host; importing one is what requests its grant (``omnicore build`` reads the imports).
"""

from omnicore_plugin._errors import HostError
from omnicore_plugin._handlers import handler, handlers, json_handler

__all__ = ["HostError", "handler", "handlers", "json_handler"]
