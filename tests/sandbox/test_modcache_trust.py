"""Compiled code a host can authenticate (issue 61): whoever can write the module cache, a
folder hosts share, cannot make a host run code it did not compile.

The attack: compile another module with the same exports (a greeter answering "Pwned"),
and put its entry in the genuine entry's place, with every MAC the attacker can come by (the
forged module's own genuine MAC, an old checksum, another entry's). Every reading path
refuses it, logs once naming it, counts it and recompiles from the .wasm: the genuine answer
comes back. Damage and plain staleness (another key, another engine) are refused the same
way (damage alone: test_modcache.py).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner

from omnicore.capabilities.builtin import builtin_registry
from omnicore.cli.main import main
from omnicore.sandbox import PluginModule, PluginRuntime, SandboxEngine, modcache, modkey
from omnicore.sandbox.modkey import ModuleKey
from tests.compiler import BASELINE, COMPILER
from tests.guest_wat import ALLOC, plugin_wasm

PACKAGE = Path(__file__).resolve().parents[2] / "host" / "omnicore"


def _greeter(answer: str, extra: str = "") -> bytes:
    """A plugin ``greeter`` whose ``greet`` answers ``answer``; the exports of every
    variant are the same, the code and data are not."""
    return plugin_wasm("greeter", f"""
(module
  (memory (export "memory") 2)
  {ALLOC}
  (data (i32.const 0x100) "{answer}")
  (func (export "greet") (param i32 i32) (result i64)
    {extra}
    (i64.or (i64.shl (i64.const 0x100) (i64.const 32)) (i64.const {len(answer)})))
)""")


GENUINE = _greeter("Hello, world")
FORGED = _greeter("Pwned", extra="(drop (i32.add (i32.const 1) (i32.const 2)))")
SHA = hashlib.sha256(GENUINE).hexdigest()


def _mac_of(entry: Path) -> Path:
    return entry.with_name(entry.name + ".mac")


def _entry(cache: Path, wasm: bytes = GENUINE) -> Path:
    [entry] = cache.glob(f"{hashlib.sha256(wasm).hexdigest()}-*.cwasm")
    return entry


def _greet(cache: Path, wasm: bytes = GENUINE, **engine: object) -> bytes:
    engine.setdefault("baseline", BASELINE)
    with SandboxEngine(cache_dir=cache, **engine) as eng:  # type: ignore[arg-type]
        rt = PluginRuntime(eng, PluginModule.load(eng, wasm), builtin_registry())
        try:
            return rt.call("greet", b"")
        finally:
            rt.close()


def _forge(cache: Path, how: str, tmp_path: Path) -> Path:
    """Put the forged greeter's compiled code in the genuine entry's place, with the MAC
    ``how`` says; the genuine entry's path."""
    elsewhere = tmp_path / "attacker"
    assert _greet(elsewhere, FORGED) == b"Pwned"  # a real host compiled it: its MAC is valid
    forged = _entry(elsewhere, FORGED)
    entry = _entry(cache)
    entry.write_bytes(forged.read_bytes())
    if how == "the forged module's own MAC":
        _mac_of(entry).write_bytes(_mac_of(forged).read_bytes())
    elif how == "a checksum recomputed":  # what sufficed before: the old sum file's recipe
        _mac_of(entry).write_bytes(b"omniCW1\n" + bytes.fromhex(SHA)
                                   + hashlib.sha256(forged.read_bytes()).digest())
    else:  # the genuine entry's MAC left beside it
        assert how == "the genuine MAC"
    return entry


FORGERIES = ["the forged module's own MAC", "a checksum recomputed", "the genuine MAC"]


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="omnicore.sandbox"):
        yield caplog


def _refused_once(caplog: pytest.LogCaptureFixture, entry: Path) -> None:
    named = [r for r in caplog.records if str(entry) in r.getMessage()]
    assert len(named) == 1, [r.getMessage() for r in caplog.records]
    assert named[0].levelno == logging.WARNING and "is refused" in named[0].getMessage()


# -- the forged entry, on every path that reads compiled code --------------------------------

def test_the_forgery_runs_when_nothing_checks_it(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack is real: without the MAC check, the host answers the forged code's
    "Pwned" (what the tests below would miss if the forgery were not executable)."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    _forge(cache, "the forged module's own MAC", tmp_path)
    monkeypatch.setattr(modcache, "_why_refused", lambda *_: None)
    assert _greet(cache) == b"Pwned"


@pytest.mark.parametrize("how", FORGERIES)
def test_an_engine_refuses_a_forged_entry_and_recompiles_it(
        tmp_path: Path, warnings: pytest.LogCaptureFixture, how: str) -> None:
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    entry = _forge(cache, how, tmp_path)
    before = modcache.rejected()
    warnings.clear()
    assert _greet(cache) == b"Hello, world"
    _refused_once(warnings, entry)
    assert modcache.rejected() == before + 1
    assert entry.read_bytes() != _entry(tmp_path / "attacker", FORGED).read_bytes()  # replaced
    warnings.clear()
    assert _greet(cache) == b"Hello, world"  # from the new entry, trusted
    assert not warnings.records


def test_a_host_starting_on_a_forged_entry_serves_the_genuine_plugin(
        tmp_path: Path, start_host: object, warnings: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    sandbox = {"cache_dir": str(cache), "compiler": COMPILER}
    start = start_host  # type: ignore[assignment]
    first = start(serving={"greeter.wasm": GENUINE}, sandbox=sandbox)  # type: ignore[operator]
    assert first.plugins.call("greeter", "greet") == b"Hello, world"
    first.stop()
    entry = _forge(cache, "the forged module's own MAC", tmp_path)
    warnings.clear()
    second = start(serving={"greeter.wasm": GENUINE}, sandbox=sandbox)  # type: ignore[operator]
    assert second.plugins.call("greeter", "greet") == b"Hello, world"
    _refused_once(warnings, entry)


def test_a_host_serving_a_catalog_version_refuses_its_forged_entry(
        tmp_path: Path, start_host: object, warnings: pytest.LogCaptureFixture) -> None:
    """A version the catalog serves (not the folder): compiled by the first host, forged,
    then loaded by the next host at its start."""
    from omnicore.plugins.catalog import app_catalog
    from tests.waiting import eventually

    cache = tmp_path / "cache"
    sandbox = {"cache_dir": str(cache), "compiler": COMPILER}
    start = start_host  # type: ignore[assignment]
    first = start(sandbox=sandbox)  # type: ignore[operator]
    catalog = app_catalog(lambda: first.storage, first.plugins.published.check_module,
                          first.config.catalog)
    catalog.publish(GENUINE, by="ada")
    eventually(lambda: "greeter" in first.plugins
               and first.plugins.get("greeter").state == "loaded", "the version served")
    assert first.plugins.get("greeter").origin == "catalog"
    assert first.plugins.call("greeter", "greet") == b"Hello, world"
    first.stop()
    entry = _forge(cache, "the forged module's own MAC", tmp_path)
    warnings.clear()
    second = start(sandbox=sandbox)  # type: ignore[operator]
    eventually(lambda: "greeter" in second.plugins
               and second.plugins.get("greeter").state == "loaded", "the version served")
    assert second.plugins.get("greeter").origin == "catalog"
    assert second.plugins.call("greeter", "greet") == b"Hello, world"
    _refused_once(warnings, entry)


def test_omnicore_call_refuses_a_forged_entry(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              warnings: pytest.LogCaptureFixture) -> None:
    """``omnicore call`` of a bare file: the user's module cache, the same door."""
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("OMNICORE_CACHE_DIR", str(cache))
    monkeypatch.setenv("OMNICORE_SANDBOX__COMPILER", "cranelift")  # what user_engine makes
    plugin = tmp_path / "greeter.wasm"
    plugin.write_bytes(GENUINE)
    got = CliRunner().invoke(main, ["call", str(plugin), "greet"])
    assert got.exit_code == 0 and got.output.strip() == "Hello, world", got.output
    [entry] = cache.glob(f"{SHA}-*.cwasm")
    forged = _greet(tmp_path / "attacker", FORGED, baseline=False)
    assert forged == b"Pwned"
    [theirs] = (tmp_path / "attacker").glob("*.cwasm")
    entry.write_bytes(theirs.read_bytes())
    _mac_of(entry).write_bytes(_mac_of(theirs).read_bytes())
    warnings.clear()
    got = CliRunner().invoke(main, ["call", str(plugin), "greet"])
    assert got.exit_code == 0 and got.output.strip() == "Hello, world", got.output
    _refused_once(warnings, entry)


def _app(root: Path) -> Path:
    (root / "plugins").mkdir(parents=True)
    (root / "plugins" / "greeter.wasm").write_bytes(GENUINE)
    (root / "omnicore.yaml").write_text(
        f"plugins_dir: plugins\ndata_dir: data\nsandbox:\n  cache_dir: {root / 'cache'}\n"
        f"  compiler: {COMPILER}\n")
    return root


def test_precompile_from_a_cache_holding_a_forged_entry_compiles_instead(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    build, image = _app(tmp_path / "build"), _app(tmp_path / "image")
    got = CliRunner().invoke(main, ["precompile", str(build)])
    assert got.exit_code == 0, got.output
    source = build / "cache"
    entry = _forge(source, "the forged module's own MAC", tmp_path)
    warnings.clear()
    got = CliRunner().invoke(main, ["precompile", str(image), "--from", str(source)])
    assert got.exit_code == 0, got.output
    assert "compiled 1 of 1" in got.output and "(0 of them taken" in got.output
    _refused_once(warnings, entry)
    assert _greet(image / "cache") == b"Hello, world"


def test_precompile_from_takes_what_the_same_key_made(tmp_path: Path) -> None:
    """The build machine has the hosts' key (OMNICORE_MODULE_KEY): its entries are taken,
    and the host then loads them without compiling."""
    build, image = _app(tmp_path / "build"), _app(tmp_path / "image")
    assert CliRunner().invoke(main, ["precompile", str(build)]).exit_code == 0
    got = CliRunner().invoke(main, ["precompile", str(image), "--from", str(build / "cache")])
    assert "(1 of them taken compiled from" in got.output, got.output


# -- keys: wrong, rotated; entries swapped, damaged, for another engine -----------------------

def _key() -> str:
    return ModuleKey.new().encoded()


def test_an_entry_made_with_another_key_is_recompiled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """A rotated key (or another host's): the id says which, the entry is not trusted."""
    cache = tmp_path / "cache"
    old, new = _key(), _key()
    monkeypatch.setenv(modkey.ENV_KEY, old)
    assert _greet(cache) == b"Hello, world"
    entry = _entry(cache)
    monkeypatch.setenv(modkey.ENV_KEY, new)
    warnings.clear()
    assert _greet(cache) == b"Hello, world"
    _refused_once(warnings, entry)
    old_id = ModuleKey(base64.b64decode(old)).id
    assert f"made with module key {old_id}" in warnings.text and "rotated" in warnings.text
    assert _mac_of(entry).read_bytes()[8:16].hex() == ModuleKey(base64.b64decode(new)).id


def test_a_forged_mac_under_the_right_key_id_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """A wrong key claiming this key's id (the id is public: it is in every MAC file)."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    entry = _entry(cache)
    mine = modkey.from_env()
    assert mine is not None
    wrong = ModuleKey(os.urandom(32))
    body = entry.read_bytes()
    forged_mac = modcache._mac(wrong, modcache.Origin(SHA, "x"), body)
    _mac_of(entry).write_bytes(modcache.MAGIC + bytes.fromhex(mine.id) + forged_mac)
    warnings.clear()
    assert _greet(cache) == b"Hello, world"
    _refused_once(warnings, entry)
    assert "MAC does not match" in warnings.text


def test_mac_files_swapped_between_two_genuine_entries_are_refused(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    other = _greeter("Hello, other")
    assert _greet(cache) == b"Hello, world" and _greet(cache, other) == b"Hello, other"
    one, two = _entry(cache), _entry(cache, other)
    mac_one, mac_two = _mac_of(one).read_bytes(), _mac_of(two).read_bytes()
    _mac_of(one).write_bytes(mac_two)
    _mac_of(two).write_bytes(mac_one)
    warnings.clear()
    assert _greet(cache) == b"Hello, world" and _greet(cache, other) == b"Hello, other"
    assert "MAC does not match" in warnings.text
    _refused_once(warnings, one)
    _refused_once(warnings, two)


def test_whole_entries_swapped_between_two_modules_are_refused(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """Each entry with its own valid MAC, under the other's name: the MAC covers what the
    entry was compiled from."""
    cache = tmp_path / "cache"
    other = _greeter("Hello, other")
    _greet(cache)
    _greet(cache, other)
    one, two = _entry(cache), _entry(cache, other)
    files = {p: p.read_bytes() for p in (one, two, _mac_of(one), _mac_of(two))}
    one.write_bytes(files[two])
    _mac_of(one).write_bytes(files[_mac_of(two)])
    warnings.clear()
    assert _greet(cache) == b"Hello, world"
    _refused_once(warnings, one)


def test_an_entry_with_a_valid_mac_for_another_engine_config_is_refused(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """The fuel engine's entry and MAC, under the plain engine's name: wasmtime might even
    accept the bytes (metering is code), the MAC does not."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    assert _greet(cache, fuel=True) == b"Hello, world"
    entries = sorted(cache.glob(f"{SHA}-*.cwasm"))
    assert len(entries) == 2
    with SandboxEngine(cache_dir=cache, baseline=BASELINE) as plain:
        path = plain.cache_path(SHA)
    assert path is not None
    [fueled] = [e for e in entries if e != path]
    path.write_bytes(fueled.read_bytes())
    _mac_of(path).write_bytes(_mac_of(fueled).read_bytes())
    warnings.clear()
    assert _greet(cache) == b"Hello, world"
    _refused_once(warnings, path)
    assert "MAC does not match" in warnings.text


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "no MAC", "MAC cut"])
def test_truncated_and_garbage_entries_are_recompiled(
        tmp_path: Path, warnings: pytest.LogCaptureFixture, damage: str) -> None:
    cache = tmp_path / "cache"
    _greet(cache)
    entry = _entry(cache)
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:1000])
    elif damage == "garbage":
        entry.write_bytes(os.urandom(entry.stat().st_size))
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "no MAC":
        _mac_of(entry).unlink()
    else:
        _mac_of(entry).write_bytes(_mac_of(entry).read_bytes()[:20])
    warnings.clear()
    assert _greet(cache) == b"Hello, world"
    _refused_once(warnings, entry)


# -- the key: where it comes from ------------------------------------------------------------

class _Store:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def get(self, name: str) -> bytes | None:
        return self.values.get(name)

    def set(self, name: str, value: bytes | str) -> None:
        self.values[name] = value.encode() if isinstance(value, str) else value


def test_the_secret_store_key_is_made_once_and_shared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts of a cluster share the store: the first makes the key, the others read it."""
    monkeypatch.delenv(modkey.ENV_KEY)
    store = _Store()
    one = modkey.app_key(lambda: store, tmp_path / "a")
    two = modkey.app_key(lambda: store, tmp_path / "b")
    assert one == two and one.source == "secret store"
    assert list(store.values) == [modkey.SECRET_NAME]
    assert not (tmp_path / "a").exists()  # nothing on disk


def test_the_environment_key_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = _key()
    monkeypatch.setenv(modkey.ENV_KEY, key)
    got = modkey.app_key(_Store, tmp_path)
    assert got.encoded() == key and got.source == "env"
    monkeypatch.setenv(modkey.ENV_KEY, "not base64 of 32 bytes")
    with pytest.raises(Exception, match="OMNICORE_MODULE_KEY must be 32 random bytes"):
        modkey.from_env()


def test_a_store_that_cannot_be_read_gives_a_key_file_outside_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from omnicore.storage.errors import StorageError

    monkeypatch.delenv(modkey.ENV_KEY)

    def broken() -> _Store:
        raise StorageError("sealed with another key")

    got = modkey.app_key(broken, tmp_path / "data")
    assert got.source == str(tmp_path / "data" / "module.key")
    assert (tmp_path / "data" / "module.key").stat().st_mode & 0o777 == 0o600
    assert modkey.app_key(broken, tmp_path / "data") == got  # made once


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "module.key"
    modkey.from_file(path)
    path.chmod(0o644)
    with pytest.raises(Exception, match="not this user's alone"):
        modkey.from_file(path)


def test_a_key_kept_in_the_cache_folder_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    inside = modkey.from_file(cache / "module.key")
    with SandboxEngine(cache_dir=cache, module_key=lambda: inside) as eng:
        assert eng.module_key is None
        PluginModule.load(eng, GENUINE)
    assert "inside the module cache" in warnings.text
    assert not list(cache.glob("*.cwasm"))  # compiled, neither read nor written


def test_an_engine_made_without_a_key_uses_the_users(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(modkey.ENV_KEY)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    with SandboxEngine(cache_dir=tmp_path / "cache") as eng:
        key = eng.module_key
    assert key is not None and key.source == str(tmp_path / "share" / "omnicore" / "module.key")


def test_no_place_for_a_key_means_no_cache_not_a_failed_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """A container without a writable home: every module is compiled, none read."""
    monkeypatch.delenv(modkey.ENV_KEY)
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "not-a-dir"))
    assert _greet(tmp_path / "cache") == b"Hello, world"
    assert "no compiled-module key" in warnings.text
    assert not list((tmp_path / "cache").glob("*.cwasm"))


# -- one door --------------------------------------------------------------------------------

def test_only_modcache_deserializes_compiled_code() -> None:
    """wasmtime runs whatever it deserializes: every read of compiled code goes through
    modcache.load, which authenticates it first. A call of ``deserialize`` or
    ``deserialize_file`` anywhere else in the package fails here."""
    door = PACKAGE / "sandbox" / "modcache.py"
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == door:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("deserialize", "deserialize_file"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("deserialize", "deserialize_file"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == [], f"compiled code deserialized outside sandbox/modcache.py: {found}"
    calls = [n for n in ast.walk(ast.parse(door.read_text()))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in ("deserialize", "deserialize_file")]
    # In load alone: the sealed copy's file, or its bytes where there is no memfd.
    assert sorted(c.func.attr for c in calls) == ["deserialize", "deserialize_file"]  # type: ignore[attr-defined]


def test_a_wasmtime_error_on_an_authenticated_entry_recompiles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """An entry this key made that this wasmtime refuses (another wasmtime version wrote
    it): recompiled, as any refused entry."""
    cache = tmp_path / "cache"
    _greet(cache)

    def refuse(cls: type, engine: wasmtime.Engine, source: object) -> wasmtime.Module:
        raise wasmtime.WasmtimeError("Module was compiled with incompatible version")

    for name in ("deserialize", "deserialize_file"):
        monkeypatch.setattr(wasmtime.Module, name, classmethod(refuse))
    warnings.clear()
    assert _greet(cache) == b"Hello, world"
    assert "wasmtime refused it" in warnings.text
