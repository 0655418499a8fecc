"""``omnicore build`` and ``omnicore new plugin``: the plugin author's commands."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from omnicore.errors import BuildError

if TYPE_CHECKING:
    from omnicore.config import OmniConfig
    from omnicore.sandbox import SandboxEngine
    from omnicore.sandbox.modkey import ModuleKey
    from omnicore.storage import Storage
    from omnicore.toolchains import BuildResult

# The toolchains (and the engine they embed manifests with) are imported inside the commands:
# `omnicore --help` and every other command should not pay for them.

__all__ = ["build_command", "install", "new_plugin_command", "precompile_command", "report"]

_LANGS = ["rust", "go", "js", "ts", "c", "python"]
_LANGS += ["ruby"]  # issue 37, in a line of its own for the languages landing beside it
_LANGS += ["zig", "assemblyscript", "as"]
_LANGS += ["kotlin"]  # issue 64


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _size(path: Path | None) -> str:
    if path is None:
        return "-"
    n = path.stat().st_size
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def report(index: int, total: int, src: Path, result: BuildResult | None) -> None:
    """``build_all``'s progress as ``omnicore build`` prints it: one line per project."""
    tty = sys.stdout.isatty()
    # `omnicore build .` names the project, not ".".
    label = f"[{index}/{total}] {src.resolve().name if src.name in ('', '..') else src}"
    if result is None:
        click.echo(f"{label} ...", nl=not tty)
        return
    prefix = "\r" if tty else ""
    if result.up_to_date and result.output is not None:
        click.echo(f"{prefix}{label}: up to date ({_shown(result.output)})")
    elif result.cached and result.output is not None:
        status = click.style("ok", fg="green")
        click.echo(f"{prefix}{label}: {status} {result.language}, {_size(result.output)}, "
                   f"from the build cache -> {_shown(result.output)}")
    elif result.ok and result.output is not None:
        status = click.style("ok", fg="green")
        click.echo(f"{prefix}{label}: {status} {result.language}, {_size(result.output)}, "
                   f"{result.seconds:.1f}s -> {_shown(result.output)}")
    else:
        click.echo(f"{prefix}{label}: {click.style('FAILED', fg='red')} ({result.language})")
        click.echo("    " + (result.error or "").replace("\n", "\n    "), err=True)


@click.command("build")
@click.argument("source", type=click.Path(exists=True, path_type=Path), default=Path("."))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("build/plugins"),
              show_default=True, help="Where the .wasm files go.")
@click.option("--app", "app_dir", type=click.Path(path_type=Path), default=None,
              help="Also install the built plugins into APP/plugins (a running host reloads them).")
@click.option("--force", is_flag=True, help="Rebuild even when no source changed.")
def build_command(source: Path, out_dir: Path, app_dir: Path | None, force: bool) -> None:
    """Build a plugin project, or every project below SOURCE, into .wasm files."""
    from omnicore.toolchains import build_all

    results = build_all(source, out_dir, force=force, progress=report)
    if not results:
        raise BuildError(f"no plugin projects found below {source}")
    if app_dir is not None:
        install(results, app_dir)
    failed = [r for r in results if not r.ok]
    click.echo(f"built {len(results) - len(failed)} of {len(results)} plugins into {out_dir}"
               + (f" and {app_dir / 'plugins'}" if app_dir else ""))
    if failed:
        raise BuildError(f"{len(failed)} plugin(s) failed to build: "
                         + ", ".join(str(r.src) for r in failed))


def install(results: list[BuildResult], app_dir: Path) -> list[Path]:
    """Copy what was built into APP/plugins, each file atomically (a watching host reloads
    it whole), and compile it into the app's module cache; the paths installed."""
    dest = app_dir / "plugins"
    dest.mkdir(parents=True, exist_ok=True)
    installed = []
    for result in results:
        if result.output is not None:
            tmp = dest / f".{result.output.name}.tmp"
            shutil.copyfile(result.output, tmp)
            tmp.replace(dest / result.output.name)
            installed.append(dest / result.output.name)
    _precompile(app_dir, installed)
    return installed


def _precompile(app_dir: Path, paths: list[Path], source: Path | None = None,
                source_key: ModuleKey | None = None) -> tuple[int, Path] | None:
    """Compile ``paths`` into the app's module cache, in parallel, with the engine settings
    its host uses: the next ``omnicore run`` loads them from the cache instead of compiling
    (seconds each for Go and JS). With ``source`` (another module cache), an entry it holds
    for the same bytes and settings is taken, checked, instead of compiled. A file that does
    not compile is left for the host to report. How many compiled and where; None when the
    app has no config or no cache.
    """
    from concurrent.futures import ThreadPoolExecutor

    from omnicore.config import load_config
    from omnicore.errors import OmniError
    from omnicore.plugins.ahead import workers
    from omnicore.sandbox import PluginModule, SandboxEngine

    config = app_dir / "omnicore.yaml"
    if not paths or not config.is_file():
        return None
    cfg = load_config(config)
    if cfg.sandbox.cache_dir is None:
        return None
    taken: list[Path] = []  # list.append is atomic across the pool's threads

    def compile_one(path: Path) -> bool:
        # An untrusted source fails the command (ConfigError), not this plugin alone.
        if source is not None and _take(engine, path, source, source_key):
            taken.append(path)
        try:
            PluginModule.load(engine, path)
        except OmniError:
            return False
        return True

    with _app_key(cfg) as key, SandboxEngine.for_config(cfg.sandbox, module_key=key) as engine, \
            ThreadPoolExecutor(max_workers=workers()) as pool:
        done = sum(pool.map(compile_one, sorted(paths, key=lambda p: p.stat().st_size)))
    took = f" ({len(taken)} of them taken compiled from {source})" if source is not None else ""
    click.echo(f"compiled {done} of {len(paths)} into {cfg.sandbox.cache_dir}{took}, so "
               f"`omnicore run {app_dir}` starts from the cache")
    return done, cfg.sandbox.cache_dir


@contextmanager
def _app_key(cfg: OmniConfig) -> Iterator[ModuleKey]:
    """The key the app's hosts authenticate its compiled modules with (their secret store's,
    or ``OMNICORE_MODULE_KEY``): what precompiled entries must carry to be loaded."""
    from omnicore.cli.appdata import open_app_storage
    from omnicore.sandbox import modkey
    from omnicore.storage.secrets import SecretStore

    opened: list[Storage] = []

    def store() -> SecretStore:
        opened.append(open_app_storage(cfg))
        return SecretStore(opened[0].secrets, cfg.data_dir)

    try:
        yield modkey.app_key(store, cfg.data_dir)
    finally:
        for storage in opened:
            storage.close()


def _take(engine: SandboxEngine, path: Path, source: Path,
          source_key: ModuleKey | None = None) -> bool:
    """Whether ``source`` (a module cache) gave ``engine``'s cache its entry for ``path``."""
    import hashlib

    from omnicore.sandbox import modcache

    wasm = path.read_bytes()
    sha = hashlib.sha256(wasm).hexdigest()
    entry, key = engine.cache_path(sha), engine.module_key
    if entry is None or key is None or engine.is_cached(sha):
        return False
    origin = engine.origin(sha)
    if wasm[4:8] != b"\x01\x00\x00\x00":  # a component: its entry is named apart
        from omnicore.sandbox.component import compiled

        entry, origin = compiled.cache_path(engine, sha), compiled.origin(engine, sha)
        if entry is None or entry.exists():
            return False
    return modcache.adopt(source, entry, origin, key, source_key)


@click.command("precompile")
@click.argument("appdir", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("--from", "source", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Take what DIR, another module cache (a build machine's, a "
              "CI's), already compiled with the same settings, instead of compiling it; an "
              "entry is taken only when the app's module key (OMNICORE_MODULE_KEY, else its "
              "secret store's) authenticates it, as the host checks its own.")
@click.option("--from-key", "from_key", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=None, help="The key (a file holding it in base64) that "
              "authenticates the entries of --from, when not the app's: an image build takes "
              "a CI's modules and seals them with the image's own key.")
def precompile_command(appdir: Path, source: Path | None, from_key: Path | None) -> None:
    """Compile every plugin in APPDIR's plugin folder into its module cache (sandbox.cache_dir),
    so that a host (a container image, a new pod) starts warm; fails when one does not compile.
    """
    from omnicore.config import load_config

    config = appdir / "omnicore.yaml"
    if not config.is_file():
        raise click.ClickException(f"{config} not found: APPDIR is an app folder with an "
                                   "omnicore.yaml (`omnicore new APPDIR` makes one)")
    cfg = load_config(config)
    if cfg.sandbox.cache_dir is None:
        raise click.ClickException("this app has no module cache (sandbox.cache_dir)")
    paths = sorted(cfg.plugins_dir.glob("*.wasm"))
    source_key = None
    if from_key is not None:
        from omnicore.sandbox import modkey

        source_key = modkey.from_text(from_key.read_text(), str(from_key))
    got = _precompile(appdir, paths, source, source_key)
    done = got[0] if got is not None else 0
    if done != len(paths):
        raise click.ClickException(f"{len(paths) - done} of {len(paths)} plugins did not "
                                   f"compile: `omnicore inspect FILE.wasm` says why")


@click.command("plugin")
@click.argument("name")
@click.option("--lang", type=click.Choice(_LANGS), required=True, help="The plugin's language.")
@click.option("--dir", "parent", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="Create the project in DIR/NAME.")
@click.option("--template", type=click.Choice(["greeter", "http"]), default="greeter",
              show_default=True,
              help="greeter: a JSON handler; http: a route handler answering HTTP on a route "
                   "the operator maps (rust, go, js; its mapping in routes.yaml).")
def new_plugin_command(name: str, lang: str, parent: Path, template: str) -> None:
    """Create a plugin project NAME that builds and runs as is."""
    from omnicore.toolchains import scaffold, scaffold_grants
    from omnicore.toolchains.manifest import read_plugin_meta

    dest = parent / name
    if template != "greeter":
        from omnicore.scaffolds.plugin_templates import apply_plugin_template

        if lang not in ("rust", "go", "js"):
            raise click.BadParameter(f"the {template} template is made for rust, go and js",
                                     param_hint="--template")
        scaffold(dest, name, lang)
        apply_plugin_template(dest, name, lang, template)
        click.echo(f"created {lang} HTTP route plugin {name} in {dest}\n"
                   f"  build it:  omnicore build {dest}\n"
                   f"  try it:    omnicore test {dest} --http 'GET /{name}/hello/Ada'\n"
                   f"  serve it:  map its route in omnicore.yaml ({dest / 'routes.yaml'})")
        return
    scaffold(dest, name, lang)
    handlers = read_plugin_meta(dest).get("handlers") or ["<handler>"]
    if lang in ("python", "ruby"):  # handlers are declared in code, not listed in the toml
        handlers = ["greet"]
    needs = scaffold_grants(lang)
    grants = " ".join(f"--grant {cap}" for cap in needs)
    if "kv" in needs:  # kv keeps its data in an app: a bare .wasm call cannot grant it
        click.echo(f"created {lang} plugin {name} in {dest}\n"
                   f"  an app:    omnicore new myapp\n"
                   f"  build it:  omnicore build {dest} --app myapp\n"
                   f"  call it:   omnicore call {name} {handlers[0]} --app myapp {grants} "
                   f"--input '{{\"name\": \"Ada\"}}' -v"
                   f"\n  test it:   omnicore test {dest}")
        return
    click.echo(f"created {lang} plugin {name} in {dest}\n"
               f"  build it:  omnicore build {dest}\n"
               f"  call it:   omnicore call build/plugins/{name}.wasm {handlers[0]} "
               f"{grants} --input '{{\"name\": \"Ada\"}}' -v"
               f"\n  test it:   omnicore test {dest}")
