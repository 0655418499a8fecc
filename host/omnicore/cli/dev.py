"""``omnicore dev``: the author's loop. Build, serve, and on every save build again; the
running host reloads what changed (as ``spin watch`` does for Spin apps).

The watch is a poll of the projects' files (each one's :mod:`omnicore.filestamp`, every
``--interval``): no inotify dependency, and it works the same on network and container
mounts, where inotify often misses changes. A change builds once the files stop moving (one
quiet interval), so an editor's write-rename-chmod sequence builds once. A build that fails
leaves the running version serving and prints why.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import click

from omnicore.cli.app import run
from omnicore.cli.build import install, report
from omnicore.cli.main import CONFIG_FILE
from omnicore.filestamp import Stamp, stamp

__all__ = ["dev_command"]

#: Each watched file's path (relative to its project) and stamp.
_Files = tuple[tuple[str, Stamp], ...]
#: Files that hold more than this many entries are not watched file by file (a runaway tree).
_MAX_FILES = 20_000


def _files(project: Path) -> _Files:
    """What a save changes: each source file's path and stamp (a checkout or an unpacked
    archive that keeps times and sizes still moves its change time)."""
    from omnicore.toolchains import SKIP_DIRS  # not at import: `omnicore --help` stays light

    seen = []
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project)
        if SKIP_DIRS & set(rel.parts) or not path.is_file():
            continue
        try:
            st = path.stat()
        except OSError:  # deleted between the listing and now: the next poll sees it
            continue
        seen.append((str(rel), stamp(st)))
        if len(seen) >= _MAX_FILES:
            break
    return tuple(seen)


class Watcher:
    """Polls the projects below ``source``; builds and installs each one that changed."""

    def __init__(self, source: Path, out_dir: Path, app_dir: Path, interval: float) -> None:
        self.source, self.out_dir, self.app_dir = source, out_dir, app_dir
        self.interval = interval
        self.stop = threading.Event()
        self._seen: dict[Path, _Files] = {}
        self._thread = threading.Thread(target=self._loop, name="omnicore-dev-watch",
                                        daemon=True)

    def _projects(self) -> list[Path]:
        from omnicore.toolchains import discover

        return list(discover(self.source))

    def snapshot(self) -> None:
        """Take the current state as built (the first build just ran)."""
        self._seen = {p: _files(p) for p in self._projects()}

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        # Ctrl-C is the main thread's: blocked here (and in every thread this one starts,
        # the builds' and the module compilation's), the kernel hands a SIGINT or SIGTERM
        # to the main thread, whose handler runs at once.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        pending: dict[Path, _Files] = {}
        while not self.stop.wait(self.interval):
            try:
                now = {p: _files(p) for p in self._projects()}
            except OSError as exc:
                click.echo(f"[dev] cannot read {self.source}: {exc}", err=True)
                continue
            # Build what changed and then stayed still for one interval.
            ready = [p for p, files in now.items()
                     if pending.get(p) == files and self._seen.get(p) != files]
            pending = {p: files for p, files in now.items() if self._seen.get(p) != files}
            for project in ready:
                self._rebuild(project, now[project])

    def _rebuild(self, project: Path, files: _Files) -> None:
        from omnicore.toolchains import build_all

        started = time.monotonic()
        click.echo(f"[dev] {project.name}: changed, building")
        try:
            results = build_all(project, self.out_dir, progress=report)
        except Exception as exc:  # a broken toolchain must not end the loop
            click.echo(f"[dev] {project.name}: the build failed: {exc}", err=True)
            results = []
        self._seen[project] = files  # a failed build is retried on the next save, not now
        good = [r for r in results if r.ok and not r.up_to_date]
        if results and len(good) == len(results):
            install(good, self.app_dir)
            click.echo(f"[dev] {project.name}: built in {time.monotonic() - started:.1f} s "
                       "and installed; the host reloads it")
        elif results and all(r.up_to_date for r in results):
            click.echo(f"[dev] {project.name}: up to date")
        else:
            click.echo(f"[dev] {project.name}: not installed; the running version keeps "
                       "serving", err=True)


@click.command("dev")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path),
                default=Path("."))
@click.option("--app", "app_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="The app to serve the plugins in (default: build/dev, "
                                 "created on first use).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("build/plugins"),
              show_default=True, help="Where the .wasm files are built.")
@click.option("--interval", type=click.FloatRange(0.05, 60), default=0.5, show_default=True,
              help="Seconds between two looks at the sources.")
@click.option("--no-console", is_flag=True, help="Do not serve the web console.")
@click.pass_context
def dev_command(ctx: click.Context, source: Path, app_dir: Path | None, out_dir: Path,
                interval: float, no_console: bool) -> None:
    """Build the plugin projects below SOURCE, serve them in an app, and build and reload
    each one again whenever its files change. Ctrl-C stops.

    The app's grants apply as for `omnicore run`: a plugin that needs a grant waits in
    needs-grant until the console or APP/omnicore.yaml gives it.
    """
    # As `omnicore run` does: SIGINT and SIGTERM blocked from here, so every thread the first
    # build starts blocks them too (wasmtime's compile pool, started by reading a plugin's
    # handlers, lives as long as the process) and a Ctrl-C reaches the main thread. They are
    # let through once a handler is in place: below, or by `run`'s driver. A Ctrl-C during
    # the first build is taken when it ends (its toolchain got the terminal's own).
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        _dev(ctx, source, app_dir, out_dir, interval, no_console, held)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _dev(ctx: click.Context, source: Path, app_dir: Path | None, out_dir: Path,
         interval: float, no_console: bool, held: set[int | signal.Signals]) -> None:
    from omnicore.cli.remote import running_host
    from omnicore.errors import BuildError
    from omnicore.toolchains import build_all

    if app_dir is None:
        app_dir = Path("build") / "dev"
    if not (app_dir / CONFIG_FILE).is_file():
        from omnicore.scaffolds import scaffold_app

        scaffold_app(app_dir, "dev")
        click.echo(f"[dev] created the app {app_dir} (omnicore.yaml: grants, config)")
    results = build_all(source, out_dir, progress=report)
    if not results:
        raise BuildError(f"no plugin projects found below {source}")
    install([r for r in results if r.ok], app_dir)
    watcher = Watcher(source, out_dir, app_dir, interval)
    watcher.snapshot()
    # A host already serving the app (`omnicore run` in another terminal) holds its data
    # dir: a second one could not start. It watches its plugins folder, where the builds are
    # installed, so the loop works with it instead of starting one.
    _, host = running_host(app_dir)
    watcher.start()
    try:
        if host is not None:
            click.echo(f"[dev] watching {source} every {interval:g} s; the host already "
                       f"running at {host.url} serves {app_dir} and reloads each build "
                       "installed into its plugins folder (Ctrl-C stops watching; the host "
                       "keeps running)")
            # Ctrl-C and SIGTERM only note that they came, and the main thread looks every
            # 0.25 s. A KeyboardInterrupt raised inside the watcher's Event.wait could leave
            # the Event's lock held, and the stop's set() below then waited for ever (seen:
            # `dev` not exiting after Ctrl-C in whole CI runs).
            signals: list[int] = []
            previous = {sig: signal.signal(sig, lambda got, _frame: signals.append(got))
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # one held back comes now
            try:
                while not signals:
                    time.sleep(0.25)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        else:
            click.echo(f"[dev] watching {source} every {interval:g} s; serving {app_dir}")
            ctx.invoke(run, appdir=app_dir, no_console=no_console)
    except KeyboardInterrupt:
        if host is None:
            raise
    finally:
        watcher.stop.set()
