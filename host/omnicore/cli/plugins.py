"""``omnicore inspect`` and ``omnicore call``: look at a plugin, or run one handler once.

Both work without a running server: ``call`` loads the plugin embedded in this process, with
the same layering a running app uses (app config ``plugins.<name>`` < sidecar < ``--grant`` /
``--config``) and the app's compiled-module cache, so a plugin dropped into the folder of a
running ``omnicore run`` is callable here at once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from omnicore.cli.main import hint
from omnicore.errors import ConfigError, NeedsGrant, OmniError, PluginLoadError

if TYPE_CHECKING:
    from omnicore.cli.remote import Remote
    from omnicore.sandbox import SandboxEngine
    from omnicore.sandbox.limits import Limits

# The sandbox (and wasmtime) are imported inside the commands: `omnicore --help` and the
# other commands should not pay for loading the engine.

__all__ = ["call", "inspect"]

CONFIG_FILE = "omnicore.yaml"


def parse_grants(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--grant kv`` or ``--grant 'http={"allow_hosts": ["api.example.com"]}'``."""
    from omnicore.sandbox import grants

    try:
        return grants.parse_flag(values)
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("--grant: "),
                                 param_hint="--grant") from None


def parse_config(values: tuple[str, ...]) -> dict[str, Any]:
    """``--config KEY=VALUE``: JSON values are decoded (``42``, ``true``, ``[1]``), anything
    else is a string; dotted keys nest (``db.host=x`` -> ``{"db": {"host": "x"}}``)."""
    config: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--config")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = config
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise click.BadParameter(f"{key!r} nests under a value that is not a table",
                                         param_hint="--config")
            node = child
        node[parts[-1]] = value
    return config


def parse_links(values: tuple[str, ...]) -> dict[str, Path]:
    """``--link NAME=FILE``: a module linked by name (relative FILEs from here)."""
    links: dict[str, Path] = {}
    for item in values:
        name, sep, file = item.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise click.BadParameter(f"expected NAME=FILE, got {item!r}", param_hint="--link")
        if name in links:
            raise click.BadParameter(f"{name!r} is linked twice", param_hint="--link")
        path = Path(file)
        if not path.is_file():
            raise click.BadParameter(f"{name}={file}: no such file (the module to link under "
                                     f"{name!r})", param_hint="--link")
        links[name] = path.absolute()
    return links


def _manifest_name(path: Path) -> str | None:
    from omnicore.sandbox.wasmbin import custom_sections

    sections = custom_sections(path.read_bytes(), "omnicore.manifest")
    if not sections:
        return None
    name = json.loads(sections[0]).get("name")
    return name if isinstance(name, str) else None


def _load_app_config(appdir: Path | None) -> Any:
    """The app's config when APPDIR (or the current folder) holds an omnicore.yaml."""
    base = appdir if appdir is not None else Path(".")
    path = base / CONFIG_FILE
    if path.is_file():
        # Here, not at the top: a bare file's call needs no config schema (pydantic).
        from omnicore.config import load_config

        return load_config(path)
    if appdir is not None:
        raise ConfigError(f"no {CONFIG_FILE} in {appdir}; create an app with "
                          f"`omnicore new {appdir}`", source=str(path))
    return None


def host_for(appdir: Path | None, remote: str | None, why: str) -> Remote:
    """The host a command that needs a running one talks to: ``remote`` when given, else the
    one serving the app in ``appdir`` (found without loading the app's config; then through
    it, when it names a data dir the quick read could not see). When none runs, an OmniError
    that says how to start one and ``why`` the command needs it."""
    from omnicore.cli.remote import explicit, find_running, running_host

    if remote is not None:
        return explicit(remote)
    looked_in, host = running_host(appdir)  # no host code on the way to a running host
    if host is None:
        # The app's config names a bad key, or a data dir the quick read could not see.
        cfg = _load_app_config(appdir if appdir is not None else Path("."))
        data_dir = Path(cfg.data_dir)
        host = find_running(data_dir) if data_dir != looked_in else None
    if host is None:
        where = appdir or Path(".")
        raise OmniError(f"no running host for the app in {where} (start it with "
                        f"`omnicore run {where}`): {why}")
    return host


@contextmanager
def _quiet() -> Iterator[None]:
    # The command reports the outcome itself; the host's operator warnings ("needs grant")
    # would repeat it on stderr.
    logger = logging.getLogger("omnicore.plugins.host")
    level = logger.level
    if not (click.get_current_context().find_root().obj or {}).get("debug"):
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _resolve(target: str, cfg: Any, appdir: Path | None) -> Path:
    from omnicore.plugins.folder import resolve_plugin_file

    candidate = Path(target)
    if candidate.suffix == ".wasm" or candidate.is_file():
        if not candidate.is_file():
            raise PluginLoadError(f"no such plugin file: {candidate}")
        return candidate
    if cfg is not None:
        folder = Path(cfg.plugins_dir)
    else:
        folder = (appdir if appdir is not None else Path(".")) / "plugins"
    return resolve_plugin_file(folder, target, _manifest_name)


def user_modules_dir() -> Path:
    """Where compiled modules of plugins called outside an app are cached.

    ``$OMNICORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/omnicore/modules``, else
    ``~/.cache/omnicore/modules``. Entries are keyed by the wasm's sha256 and the engine, so a
    rebuilt plugin never meets a stale entry.
    """
    configured = os.environ.get("OMNICORE_CACHE_DIR")
    if configured:
        return Path(configured)
    # The build tools' own rule, from where a call finds it without importing them.
    from omnicore.core.userdirs import user_cache_dir

    return user_cache_dir() / "modules"


def user_engine(fuel: bool = False) -> SandboxEngine:
    """An engine over the user's module cache (:func:`user_modules_dir`): ``call`` of a bare
    file, and ``exec``, deserialize instead of compiling (seconds for a Go plugin)."""
    from omnicore.sandbox import SandboxEngine

    return SandboxEngine(cache_dir=user_modules_dir(), fuel=fuel)


def hollow_engine(fuel: bool = False) -> SandboxEngine:
    """An engine that compiles none of a plugin's code (``SandboxEngine(hollow=True)``):
    what ``inspect`` and ``workflows validate`` read and link, in a moment whatever the
    file's size (issue 63: Winch took 5.6 s on a Python component). Nothing is cached."""
    from omnicore.sandbox import SandboxEngine

    return SandboxEngine(fuel=fuel, hollow=True, baseline=True)


@contextmanager
def _host(cfg: Any) -> Iterator[Any]:
    """The plugin host a one-off call runs in.

    In an app (``cfg``): the plugin host of that app, never started — same grants, limits,
    module cache and data (kv, memory, vectors, secrets in its database) as ``omnicore run``,
    without the folder watcher, console or schedules. For a bare file: a standalone host.
    """
    if cfg is None:
        from omnicore.plugins.host import PluginHost

        # A bare file: without a cache every call would recompile (seconds for Go or JS).
        with PluginHost(engine_factory=user_engine) as host:
            host.one_off = True
            yield host
        return
    from omnicore.app import OmniApp

    app = OmniApp(config=cfg, default_modules=False)
    try:
        app.plugins.one_off = True
        yield app.plugins
    finally:
        app.close()


@click.command()
# Not dir_okay=False: click would refuse NAME when a folder of that name is in the current
# directory, where with --app a name means the plugin (a file of that name still wins, as in
# `omnicore call`).
@click.argument("file", metavar="FILE_OR_PLUGIN", type=click.Path(path_type=Path))
@click.option("--grant", "grant_opts", multiple=True, metavar="CAP[=JSON]",
              help="Grant a capability for the would-it-load check (repeatable).")
@click.option("--link", "link_opts", multiple=True, metavar="NAME=FILE",
              help="Link a wasm module under NAME for the would-it-load check (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--app", "appdir", type=click.Path(file_okay=False, path_type=Path),
              help="Look a plugin name up in this app (its running host, else its folder).")
def inspect(file: Path, grant_opts: tuple[str, ...], link_opts: tuple[str, ...],
            as_json: bool, appdir: Path | None) -> None:
    """Show what FILE.wasm exports, imports and needs, and whether it would load.

    The grants considered are the sidecar's next to FILE plus --grant. Whether it would
    load is checked as a host loads it, without compiling or running its code: its grants,
    config and limits, and its imports linked (its start code runs only when a host loads
    it: `omnicore call` does). With --app, a plugin name is looked up on the app's running
    host (its live state) or else in its folder.
    """
    if appdir is not None and not file.is_file():
        cfg = _load_app_config(appdir)
        from omnicore.cli.remote import find_running

        running = find_running(Path(cfg.data_dir))
        if running is not None and not (grant_opts or link_opts):
            click.echo(f"omnicore: '{file}' as the running host at {running.url} has it",
                       err=True)  # live state, not the file's
            _print_live(running.plugin(str(file)), as_json)
            return
        click.echo("omnicore: no running host for this app; inspecting the file in its "
                   "plugins folder", err=True)
        file = _resolve(str(file), cfg, appdir)
    from omnicore.capabilities.builtin import builtin_registry
    from omnicore.sandbox import PluginModule

    if file.is_dir():
        raise PluginLoadError(f"{file} is a directory: name a .wasm file, or a plugin of an "
                              f"app with --app DIR")
    if not file.is_file():
        raise PluginLoadError(f"no such plugin file: {file}")
    # Fuel on: a plugin whose limits set fuel loads on it, and nothing is run to meter.
    with hollow_engine(fuel=True) as engine:
        # Read from the bytes (issue 63): a component's world, from its hollow code.
        report = PluginModule.inspect(file, builtin_registry(), engine=engine, compile=False)
        if "name" not in report and not as_json:
            # The file cannot become a plugin at all (not wasm, a refused manifest): one
            # error line and exit 1, as `omnicore call` says it. --json still prints it.
            raise PluginLoadError(report["error"])
        report["file"] = str(file)
        grants = parse_grants(grant_opts)
        links = parse_links(link_opts)
        if report.get("ok"):
            _would_load(file, engine, grants, links, report)
        else:
            report["state"] = "failed"
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_report(report)
    if report.get("state") == "failed":
        sys.exit(1)


def _would_load(file: Path, engine: SandboxEngine, grants: dict[str, dict[str, Any]],
                links: dict[str, Path], report: dict[str, Any]) -> None:
    """``report`` with whether ``file`` loads as a host loads it, on ``engine``'s hollow code
    (the component the report's first look compiled, again): its grants, config and limits
    checked, its imports linked, nothing of it run (no instance starts). Issue 63: Winch
    took 5.6 s on a Python component and Cranelift 73 CPU-s on the demo's files."""
    import tempfile

    from omnicore.plugins.host import PluginHost

    # A data folder of its own, thrown away: a plugin granted kv, memory or vectors binds
    # them as in an app (no data folder refused it, "would load no").
    with _quiet(), tempfile.TemporaryDirectory(prefix="omnicore-inspect-") as data, \
            PluginHost(engine=engine, data_dir=Path(data)) as host:
        try:
            info = host.load(file, grants=grants, links=links)
            limits = host.limits_of(info.name)
            if info.state == "loaded" and limits is not None:
                _declared_within(info.name, [file, *links.values()], limits,
                                 one_instance=report.get("abi") == 1)
            report["state"] = info.state
            report["granted"] = sorted(info.granted)
            report["missing"] = [f"omnicore:{m}" for m in info.missing]
            if info.state == "needs-grant":
                report["ok"] = False
                report["error"] = info.last_error
                report["error_type"] = "NeedsGrant"
        except (PluginLoadError, ConfigError) as exc:
            report.update(ok=False, state="failed", error=str(exc),
                          error_type=type(exc).__name__)


def _declared_within(name: str, files: list[Path], limits: Limits, *,
                     one_instance: bool) -> None:
    """Raise PluginLoadError, as a host starting plugin ``name`` does, where ``files`` (its
    module and those linked to it) declare a memory or a table its ``limits`` refuse: a host
    finds that when it instantiates the plugin, before any of its code runs, and hollow code
    is never instantiated (``would load yes`` for a 2 GB memory). A component's modules are
    not read (which it instantiates is its own): a host's start alone tells. ``one_instance``: an
    omnicore ABI module, alone in its store, whose tables count against limits.max_tables
    (an Extism plugin's and a component's share theirs with other instances)."""
    from omnicore.sandbox import wasmbin

    for path in files:
        try:
            memories, tables = wasmbin.declared_sizes(path.read_bytes())
        except (OSError, wasmbin.WasmFormatError):
            continue  # a component, or bytes the load read as wasmtime does
        cause = f"plugin {name!r} failed to start: plugin {name!r} declares"
        if any(pages * 65536 > limits.max_memory_bytes for pages in memories):
            raise PluginLoadError(f"{cause} more initial memory than limits.max_memory_bytes "
                                  f"({limits.max_memory_bytes}) allows: oom")
        largest = max(tables, default=0)
        if largest > limits.max_table_elements or (one_instance
                                                    and len(tables) > limits.max_tables):
            what = (f"table minimum size of {largest} elements exceeds table limits"
                    if largest > limits.max_table_elements
                    else f"resource limit exceeded: table count too high at {len(tables)}")
            raise PluginLoadError(f"{cause} more or larger tables than its limits allow "
                                  f"(limits.max_tables {limits.max_tables}, "
                                  f"limits.max_table_elements {limits.max_table_elements}): "
                                  f"{what}")


def _print_live(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    echo = click.echo
    echo(f"plugin      {doc['name']} {doc.get('version') or ''}  [{doc['state']}]")
    echo(f"file        {doc.get('source') or '(bytes)'}")
    echo(f"handlers    {', '.join(doc.get('handlers') or []) or '(none)'}")
    requested = ", ".join("omnicore:" + c for c in doc.get("requested") or [])
    echo(f"requested   {requested or '(none)'}")
    echo(f"granted     {', '.join(sorted(doc.get('granted') or {})) or '(none)'}")
    if doc.get("missing"):
        echo(f"needs grant {', '.join('omnicore:' + m for m in doc['missing'])}")
        for cap in doc["missing"]:  # a running host takes grants from the operator's settings
            todo = hint(f"omnicore settings grant {doc['name']} {cap}")
            echo(f"  grant it  {todo}")
    stats = doc.get("stats") or {}
    echo(f"calls       {stats.get('calls', 0)} ({stats.get('errors', 0)} errors)")
    if doc.get("last_error"):
        echo(f"last error  {doc['last_error']}")


def _print_report(r: dict[str, Any]) -> None:
    echo = click.echo
    echo(f"file        {r['file']}")
    if "name" not in r:
        echo(f"would load  no: {r.get('error_type')}: {r.get('error')}")
        return
    manifest = r.get("manifest") or {}
    echo(f"plugin      {r['name']} {manifest.get('version', '0.0.0')}"
         + (f" - {manifest['description']}" if manifest.get("description") else ""))
    echo(f"size        {r['size']} bytes, sha256 {r['sha256']}")
    echo(f"abi         {r['abi']}" + (f" (assumed: {r['abi_reason']})" if r.get("abi_reason")
                                        else "") + ("  (WASI reactor)" if r.get("wasi") else ""))
    echo(f"handlers    {', '.join(r['handlers']) or '(none)'}")
    echo("imports")
    imports: dict[str, list[str]] = r.get("imports") or {}
    if not imports:
        echo("  (none)")
    for namespace, names in sorted(imports.items()):
        echo(f"  {namespace}: {', '.join(names)}")
    echo(f"requested   {', '.join('omnicore:' + c for c in r['requested']) or '(none)'}")
    echo("exports")
    for export in r.get("exports", []):
        kind = export["kind"] + (f" {export['type']}" if "type" in export else "")
        # A component's export: how it is called (flat or value-api), as --json.
        path = f"  [{export['path']}]" if "path" in export else ""
        echo(f"  {export['name']} ({kind}){path}")
    if r.get("world"):  # a component: its WIT world, as wasm-tools would print it
        echo("world")
        for line in r["world"]:
            echo(f"  {line}")
    if manifest:
        echo(f"manifest    {json.dumps(manifest, sort_keys=True)}")
    state = r.get("state")
    if state == "loaded":
        # Linked on hollow code (_would_load): what its own code does at start is not known.
        echo("would load  yes  (linked as a host links it; its code does not run here: "
             "`omnicore call` runs it)")
    elif state == "needs-grant":
        missing = ", ".join(r.get("missing", []))
        flags = " ".join(f"--grant {m.removeprefix('omnicore:')}" for m in r.get("missing", []))
        echo(f"would load  needs grant: {missing}  (try {flags})")
    else:
        echo(f"would load  no: {r.get('error_type')}: {r.get('error')}")


@click.command()
@click.argument("target", metavar="PLUGIN_OR_FILE")
@click.argument("handler")
@click.option("--input", "input_text", metavar="TEXT", help="The input, as UTF-8 text.")
@click.option("--input-file", type=click.File("rb"), metavar="F",
              help="Read the input bytes from F ('-' for stdin).")
@click.option("--grant", "grant_opts", multiple=True, metavar="CAP[=JSON]",
              help="Grant a capability, optionally with JSON options (repeatable).")
@click.option("--config", "config_opts", multiple=True, metavar="KEY=VALUE",
              help="Set a key of the plugin's config (repeatable; JSON values decoded).")
@click.option("--link", "link_opts", multiple=True, metavar="NAME=FILE",
              help="Link the wasm module FILE under NAME (an Extism plugin's import module "
                   "name, e.g. math or extism:host/user; repeatable).")
@click.option("--app", "appdir", type=click.Path(file_okay=False, path_type=Path),
              help="The app folder (default: here, if it has an omnicore.yaml).")
@click.option("-v", "--verbose", is_flag=True,
              help="Show every line the plugin logged (default: warn and error only).")
@click.option("--remote", metavar="URL",
              help="Call the host serving its console at URL (token: $OMNICORE_TOKEN).")
@click.option("--embedded", is_flag=True,
              help="Run the plugin in this process even when the app's host is running.")
def call(target: str, handler: str, input_text: str | None, input_file: Any,
         grant_opts: tuple[str, ...], config_opts: tuple[str, ...], link_opts: tuple[str, ...],
         appdir: Path | None, verbose: bool, remote: str | None, embedded: bool) -> None:
    """Run HANDLER of a plugin once, embedded, and print its output.

    PLUGIN_OR_FILE is a .wasm path or a plugin name looked up in the app's plugins folder
    (NAME.wasm, or the file whose manifest says NAME), with its sidecar and the app config.
    The output goes to stdout; what the plugin logged during the call goes to stderr (warn
    and error, or every line with -v). A bare .wasm's compiled module is cached per user
    (see ``omnicore info``), so the second call of an unchanged file starts fast.

    A plugin name with an app whose host is running (``omnicore run``, console up) is called
    on that host through its REST API, so it sees the host's grants, state and data; stderr
    says which way the call went. ``--remote URL`` calls the host at URL.

    ``--link NAME=FILE`` links another module to an Extism plugin, as the Extism manifest's
    wasm list does (``extism call --link``); it joins NAME.json's list.
    """
    if input_text is not None and input_file is not None:
        raise click.UsageError("use --input or --input-file, not both")
    data = input_text.encode() if input_text is not None else (
        input_file.read() if input_file is not None else b"")
    if remote is not None:
        from omnicore.cli.remote import explicit

        _call_remote(explicit(remote), target, handler, data, verbose)
        return
    is_name = not (Path(target).suffix == ".wasm" or Path(target).is_file())
    looked_in: Path | None = None
    if is_name and not embedded and not (grant_opts or config_opts or link_opts):
        from omnicore.cli.remote import running_host

        # Before the app's config: a call to a running host needs none of the host's code.
        looked_in, running = running_host(appdir)
        if running is not None:
            _call_remote(running, target, handler, data, verbose,
                         (appdir or Path(".")) / "plugins")
            return
    cfg = _load_app_config(appdir)
    if cfg is not None and is_name and not embedded:
        from omnicore.cli.remote import find_running

        running = None if Path(cfg.data_dir) == looked_in else find_running(Path(cfg.data_dir))
        if running is not None and not (grant_opts or config_opts or link_opts):
            _call_remote(running, target, handler, data, verbose, Path(cfg.plugins_dir))
            return
        why = ("--grant/--config/--link apply to this call only" if running is not None
               else "no running host for this app (its console is not up)")
        click.echo(f"omnicore: {why}; running '{target}' embedded in this process", err=True)
    from omnicore.plugins.sidecar import read_sidecar

    path = _resolve(target, cfg, appdir)
    sidecar = read_sidecar(path)  # a broken sidecar is reported as itself, before anything else
    grants = parse_grants(grant_opts)
    links = parse_links(link_opts)
    if cfg is None:
        _refuse_app_state(path, {**sidecar.grants, **grants})
    if verbose and "level" not in grants.get("log", {}):
        grants["log"] = {**grants.get("log", {}), "level": "trace"}
    with _quiet(), _host(cfg) as host:
        info = host.load(path, grants=grants, config=parse_config(config_opts) or None,
                         links=links)
        if info.state == "needs-grant":
            flags = " ".join(f"--grant {m}" for m in info.missing)
            in_app = sorted(set(info.missing) & _app_state()) if cfg is None else []
            here = (f"here: --app DIR {flags}, as {', '.join(in_app)} keep"
                    f"{'s' if len(in_app) == 1 else ''} data in an app" if in_app
                    else f"here: {flags}")
            raise NeedsGrant(f"{info.last_error} ({here})", plugin=info.name,
                             missing=info.missing)
        if info.state == "disabled":
            raise PluginLoadError(f"plugin '{info.name}' is disabled (enabled: false)",
                                  plugin=info.name)
        try:
            out = host.call(info.name, handler, data)
        finally:
            _print_plugin_log(host.logs(info.name).lines(), verbose)
    _print_output(out)


def _print_output(out: bytes) -> None:
    """The call's output on stdout, and a newline after it when it has none: so the shell
    prompt, or the next line a pipe reads, starts on a line of its own. Binary output (not
    UTF-8, or with a NUL byte) gets none unless stdout is a terminal: piped or redirected, it
    is the bytes for another program (``> out.png``, ``| convert - ...``), kept exact."""
    stream = sys.stdout.buffer
    stream.write(out)
    if out and not out.endswith(b"\n") and (sys.stdout.isatty() or _is_text(out)):
        stream.write(b"\n")
    stream.flush()


def _is_text(data: bytes) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _app_state() -> set[str]:
    from omnicore.capabilities.builtin import BUILTINS

    return {b.module.rpartition(".")[2] for b in BUILTINS if b.app_state}


def _refuse_app_state(path: Path, granted: dict[str, Any]) -> None:
    """A bare file granted a capability that keeps data in an app (kv, tasks, events, ...)
    runs only in one: say so before loading it, naming the flag that does it."""
    caps = sorted(c for c, options in granted.items() if options is not None
                  and c in _app_state())
    if caps:
        raise ConfigError(
            f"{path} is granted {', '.join(caps)}, which keep{'s' if len(caps) == 1 else ''} "
            f"data in an app: run it in one with --app DIR (its database, job workers and "
            f"event bus; `omnicore new DIR` makes an app)", key=f"grant.{caps[0]}")


def _call_remote(remote: Any, name: str, handler: str, data: bytes, verbose: bool,
                 folder: Path | None = None) -> None:
    from omnicore.cli.remote import RemoteError

    click.echo(f"omnicore: calling '{name}' on the running host at {remote.url}", err=True)
    before = _last_log_time(remote, name)
    try:
        out = _call_once_loaded(remote, name, handler, data, folder)
    except RemoteError as exc:
        if exc.type != "NeedsGrant" or not exc.missing:
            raise
        # The host's own words say "--grant", a flag of an embedded call: a running host
        # takes a grant from the operator's settings, which every host applies live.
        caps = [m.removeprefix("omnicore:") for m in exc.missing]
        todo = "; ".join(hint(f"omnicore settings grant {name} {c}") for c in caps)
        need = ", ".join(f"omnicore:{c}" for c in caps)
        raise NeedsGrant(f"plugin '{name}' needs grant: {need} on the host at {remote.url}; "
                         f"grant it there: {todo}", plugin=name, missing=tuple(caps)) from None
    finally:
        _print_remote_log(remote, name, before, verbose)
    _print_output(out)


def _call_once_loaded(remote: Any, name: str, handler: str, data: bytes,
                      folder: Path | None) -> bytes:
    """``remote.call``, once the host has the plugin ready. While the host answers
    PluginNotFound for a file that lies in the app's plugin folder (dropped a moment ago: its
    watcher has not loaded it yet), ask again for at most 10 s; while it answers
    PluginCompiling (the host, or the file, is new), for at most 120 s, saying so once. A name
    with no file, or any other error, fails at once."""
    import time

    from omnicore.cli.remote import RemoteError

    start = time.monotonic()
    said = False
    while True:
        try:
            return bytes(remote.call(name, handler, data))
        except RemoteError as exc:
            waited = time.monotonic() - start
            if exc.type == "PluginCompiling" and waited < COMPILE_WAIT:
                if not said:
                    click.echo(f"omnicore: '{name}' is still compiling on that host; waiting "
                               f"for it (at most {COMPILE_WAIT:.0f} s)", err=True)
                    said = True
            elif exc.type != "PluginNotFound" or folder is None \
                    or not (folder / f"{name}.wasm").is_file() or waited > 10:
                raise
        time.sleep(0.1)


# How long `omnicore call` waits for a running host to finish compiling the plugin: the
# slowest example (componentize-py's, 40 MB) compiles in about 25 s on 2 cores.
COMPILE_WAIT = 120.0


def _last_log_time(remote: Any, name: str) -> float:
    from omnicore.errors import OmniError

    try:
        lines = remote.logs(name, limit=1)
    except OmniError:
        return 0.0
    return float(lines[0]["time"]) if lines else 0.0


def _print_remote_log(remote: Any, name: str, after: float, verbose: bool) -> None:
    """The plugin's lines logged during this call, as the embedded path prints them."""
    from omnicore.errors import OmniError

    try:
        lines = remote.logs(name, limit=200)
    except OmniError:
        return
    for line in reversed(lines):
        if line["time"] > after and (verbose or line["level"] in ("warn", "error")):
            click.echo(f"[{line['level']}] {line['message']}", err=True)


def _print_plugin_log(lines: list[Any], verbose: bool) -> None:
    """The plugin's own log lines of this call, on stderr (they are not its output)."""
    shown = [line for line in lines if verbose or line.level in ("warn", "error")]
    for line in shown:
        click.echo(f"[{line.level}] {line.message}", err=True)
