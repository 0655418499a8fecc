"""Plain Python file and socket access through WASI 0.2, one operation per call: the answer,
or the error's class and errno (tests/sandbox/test_component_wasi.py)."""

import os
import socket

from omnicore_plugin import json_handler

#: Descriptors kept open across calls by ``hold``.
HELD = []


def _run(op, a):
    if op == "read":
        with open(a["path"], "rb") as f:
            return f.read().decode("utf-8", "replace")
    if op == "write":
        with open(a["path"], a.get("mode", "w")) as f:
            return f.write(a["data"])
    if op == "update":
        with open(a["path"], "r+") as f:
            return f.write(a["data"])
    if op == "openat":
        # The path goes to the host as given, relative to the opened directory.
        base = os.open(a["dir"], os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open(a["path"], os.O_RDONLY, dir_fd=base)
            try:
                return os.read(fd, 1 << 16).decode("utf-8", "replace")
            finally:
                os.close(fd)
        finally:
            os.close(base)
    if op == "list":
        return sorted(os.listdir(a["path"]))
    if op == "stat":
        st = os.stat(a["path"])
        return {"size": st.st_size, "dir": os.path.isdir(a["path"])}
    if op == "mkdir":
        return os.mkdir(a["path"])
    if op == "rmdir":
        return os.rmdir(a["path"])
    if op == "remove":
        return os.remove(a["path"])
    if op == "rename":
        return os.rename(a["path"], a["to"])
    if op == "symlink":
        return os.symlink(a["target"], a["path"])
    if op == "link":
        return os.link(a["path"], a["to"])
    if op == "readlink":
        return os.readlink(a["path"])
    if op == "truncate":
        return os.truncate(a["path"], a.get("size", 0))
    if op == "utime":
        return os.utime(a["path"], (1, 1))
    if op == "hold":
        # Open the file up to n times and keep every descriptor: how many it got (with
        # "spin", keep them and run until the host ends the call).
        got = {"held": 0}
        for _ in range(a["n"]):
            try:
                HELD.append(os.open(a["path"], os.O_RDONLY))
            except OSError as exc:
                got["errno"] = exc.errno
                break
        got["held"] = len(HELD)
        while a.get("spin"):
            pass
        return got
    if op == "release":
        for fd in HELD:
            os.close(fd)
        HELD.clear()
        return 0
    if op == "readloop":
        # Read the file again and again: only the deadline ends this.
        while True:
            with open(a["path"], "rb") as f:
                while f.read(1 << 20):
                    pass
    if op == "dial":
        # Bytes for the host: a str would go through the idna codec, which the build leaves out.
        with socket.socket() as sock:
            sock.settimeout(5)
            sock.connect((a["host"].encode(), a["port"]))
        return "connected"
    raise ValueError(f"unknown op {op!r}")


@json_handler
def fs(request):
    try:
        return {"ok": _run(request["op"], request)}
    except OSError as exc:
        return {"error": type(exc).__name__, "errno": exc.errno}
