"""``omnicore workflows``: validate, list, show, run, runs, approve, cancel, restart.

``validate --app`` and ``list`` check each step against the app's plugins as its plugins
folder has them (nothing is loaded): a plugin the app does not have is a warning, a handler
the plugin lacks an error — what the console shows for the same workflow.

Everything but ``validate`` works on the app's storage directly (``--app DIR``, default
here), so it works whether or not ``omnicore run`` serves the app: a host that is running
picks up what the command wrote within ``workflows.poll_s``. ``run --wait`` with no host
running serves the app in this process (without its console) until the run has ended.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from omnicore.cli.appdata import app_option, config_path
from omnicore.cli.main import CONFIG_FILE, hint, main

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.sandbox import SandboxEngine
    from omnicore.storage.workflows import RunRecord
    from omnicore.workflows import Problem

__all__ = ["workflows"]

_APP = app_option("The app folder (its omnicore.yaml names data_dir and workflows.dir).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@contextmanager
def _app(appdir: Path, *, load: bool = True) -> Iterator[OmniApp]:
    """The app, not started: its storage and workflow definitions, no plugins, no workers."""
    from omnicore.app import OmniApp

    app = OmniApp(config_path=config_path(appdir), entry_points=False)
    if load:
        app.workflows.load_folder()
    try:
        yield app
    finally:
        app.data.close()


def _audit(app: OmniApp, verb: str, run_id: int, after: Any = None) -> None:
    from omnicore.accounts.audit import Actor, record

    record(app.storage, Actor.cli(), verb, f"run:{run_id}", None, after)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@main.group()
def workflows() -> None:
    """Workflows: definitions in the app's workflows/ folder and their durable runs."""


def _line(text: str) -> str:
    """One printable line: a control character in a file or step name is shown escaped, so
    a finding never moves the cursor, clears the screen or splits into two lines."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _finding(source: object, problem: Problem) -> str:
    word = "" if problem.severity == "warning" else "error: "
    return _line(f"{source}: {word}{problem}")


def _app_plugins(app: OmniApp) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """The app's plugins and their handlers as its plugins folder has them, and each
    handler's input schema: read from each file's bytes, none compiled (the demo's took 41 s
    of Cranelift on a cold cache, issue 63), instantiated or granted anything. A component's
    handlers are its manifest's (``omnicore build`` lists them); one whose manifest lists
    none is read from its hollow code (``omnicore.cli.plugins.hollow_engine``). A file that
    cannot become a plugin is left out: its steps see no plugin (a warning)."""
    from omnicore.cli.plugins import hollow_engine
    from omnicore.workflows.validation import manifest_schemas

    folder = Path(app.config.plugins_dir)
    found: dict[str, list[str]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    files = sorted(folder.glob("*.wasm")) if folder.is_dir() else []
    with hollow_engine() as engine:
        for path in files:
            report = _described(path, engine)
            if "name" in report and str(report["name"]) not in found:
                found[str(report["name"])] = [str(h) for h in report["handlers"]]
                schemas[str(report["name"])] = manifest_schemas(report.get("manifest") or {})
    return found, schemas


def _described(path: Path, engine: SandboxEngine) -> dict[str, Any]:
    """``path``'s name, handlers and manifest, compiling nothing when the bytes tell them."""
    from omnicore.errors import OmniError
    from omnicore.sandbox import PluginModule, wasmbin
    from omnicore.sandbox.manifest import check_manifest, parse_manifest

    try:
        wasm = path.read_bytes()
    except OSError:
        return {}
    if wasmbin.is_component(wasm):
        try:
            manifest = parse_manifest(wasm, path.stem)
            name = manifest.get("name") or path.stem
            check_manifest(manifest, name)
        except (OmniError, wasmbin.WasmFormatError):
            return {}
        listed = manifest.get("handlers")
        if not listed:  # only its exports tell them: read from its hollow code
            return PluginModule.inspect(path, engine=engine)
        return {"name": name, "manifest": manifest,
                "handlers": [h if isinstance(h, str) else h["name"] for h in listed]}
    return PluginModule.inspect(path, engine=engine, compile=False, validate=False)


@workflows.command("validate")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--app", "appdir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Also check each step against this app's plugins, "
                                 "connectors and workflows.")
def validate(files: tuple[Path, ...], appdir: Path | None) -> None:
    """Check definition FILES (YAML or JSON): one line per finding, with its line.

    With --app, a step whose plugin the app does not have is a warning (it may be added
    later) and one whose handler the plugin lacks, or that lacks an input the handler
    requires, is an error; without it only the definition itself is checked, and the ok
    line says so. Exit 1 on any error.
    """
    from omnicore.workflows import DefinitionError
    from omnicore.workflows.definition import read_definition
    from omnicore.workflows.validation import Verdict
    from omnicore.workflows.validation import validate as verdict_of

    bad = 0
    with _maybe_app(appdir) as app:
        plugins, schemas = _app_plugins(app) if app is not None else (None, None)
        for path in files:
            try:
                text = read_definition(path, str(path))
            except OSError as exc:
                bad += 1
                click.echo(_line(f"{path}: error: cannot read: {exc.strerror or exc}"),
                           err=True)
                continue
            except DefinitionError as exc:
                verdict = Verdict(None, tuple(exc.problems))
            else:
                verdict = verdict_of(text, str(path), app.workflows.entries if app else None,
                                     plugins=plugins, schemas=schemas)
            for p in verdict.problems:
                click.echo(_finding(path, p), err=True)
            wf = verdict.workflow
            if not verdict.ok or wf is None:
                bad += 1
                continue
            warned = f", {len(verdict.problems)} warning(s)" if verdict.problems else ""
            # Without an app there is nothing to check a step's plugin, handler, inputs or
            # connector against: an "ok" must not read as if they had been.
            unchecked = "" if app is not None else \
                "; its steps' plugins, handlers and connectors were not checked (no --app: " \
                "give --app DIR to check them)"
            click.echo(_line(f"{path}: ok — workflow {wf.name}, {len(wf.steps)} step(s), "
                             f"version {wf.version[:12]}{warned}{unchecked}"))
    if bad:
        raise click.exceptions.Exit(1)


@contextmanager
def _maybe_app(appdir: Path | None) -> Iterator[OmniApp | None]:
    if appdir is None:
        yield None
        return
    with _app(appdir) as app:
        yield app


@workflows.command("list")
@_APP
@_JSON
def list_(appdir: Path, as_json: bool) -> None:
    """List the workflows of the app's folder, loaded or failed (with why), and what is
    wrong or doubtful in each against the app's plugins (errors, warnings)."""
    with _app(appdir) as app:
        app.workflows.entries.recheck(_app_plugins(app)[0])
        entries = [e.as_dict() for e in app.workflows.entries]
        for e in entries:
            e["runs"] = app.workflows.store.count_runs(workflow=str(e["name"]))
    if as_json:
        _echo_json(entries)
        return
    if not entries:
        click.echo(f"no workflows in {app.config.workflows.dir}")
    for e in entries:
        version = str(e["version"] or "")[:12]
        click.echo(_line(f"{e['name']:<24} {e['state']:<7} {version:<13} {e['runs']:>5} "
                         f"run(s)  {Path(str(e['source'])).name}"))
        for p in e["problems"]:  # type: ignore[attr-defined]
            click.echo(_line(f"    error: {p}"))
        for p in e["warnings"]:  # type: ignore[attr-defined]
            click.echo(_line(f"    {p}"))


@workflows.command("show")
@click.argument("name")
@_APP
@_JSON
def show(name: str, appdir: Path, as_json: bool) -> None:
    """Show workflow NAME: steps, triggers, input schema, recent runs."""
    with _app(appdir) as app:
        entry = app.workflows.entries.entry(name)
        doc = entry.as_dict()
        doc["definition"] = dict(entry.workflow.document) if entry.workflow else None
        runs = app.workflows.runs(name, limit=10)
    if as_json:
        _echo_json({**doc, "runs": [r.as_dict() for r in runs]})
        return
    click.echo(f"{name}  ({doc['state']}, version {str(doc['version'] or '')[:12]}, "
               f"{doc['source']})")
    for p in doc["problems"]:  # type: ignore[attr-defined]
        click.echo(f"  problem: {p}")
    if entry.workflow:
        for s in entry.workflow.steps:
            extra = f" needs {', '.join(s.needs)}" if s.needs else ""
            kind = f"wait {s.wait.kind}" if s.wait else s.uses
            click.echo(f"  step {s.id:<20} {kind}{extra}")
        for t in entry.workflow.triggers:
            what = {"cron": f"{t.cron} ({t.timezone})", "event": t.topic,
                    "webhook": f"POST /hooks/{t.path}"}[t.kind]
            click.echo(f"  trigger {t.name}: {t.kind} {what}")
    for r in runs:
        click.echo(f"  run {r.id:<6} {r.state:<10} {_when(r.created_at)}  {r.started_by}")


def _print_run(app: OmniApp, run: RunRecord, history: bool) -> None:
    click.echo(f"run {run.id} of {run.workflow}: {run.state}  (version {run.version[:12]}, "
               f"started by {run.started_by} at {_when(run.created_at)}"
               f"{', restarted ' + str(run.restarts) + 'x' if run.restarts else ''})")
    if run.error:
        click.echo(f"  error: {run.error}")
    for s in app.workflows.steps(run.id):
        if s.index >= 0:
            continue
        took = f"{s.finished_at - s.started_at:.3f}s" if s.finished_at and s.started_at else ""
        click.echo(f"  {s.step:<20} {s.state:<10} attempt {s.attempt:<3} {took}")
        if s.error:
            click.echo(f"      error: {s.error}")
        if s.state == "waiting" and isinstance(s.wait, dict):
            click.echo(f"      waiting for {s.wait.get('kind')}"
                       + (": " + hint(f"omnicore workflows approve {run.id} {s.step}")
                          if s.wait.get("kind") == "approval" else ""))
    if run.outputs is not None:
        click.echo(f"  outputs: {json.dumps(run.outputs, ensure_ascii=False)}")
    if history:
        for h in app.workflows.store.history(run.id):
            where = f"{h.step}" + (f"[{h.index}]" if h.index is not None and h.index >= 0
                                   else "") if h.step else ""
            click.echo(f"  {_when(h.at)} {h.kind:<16} {where:<20} {h.actor or ''}")


@workflows.command("run")
@click.argument("name")
@click.option("--input", "-i", "raw", default=None, help="The inputs as a JSON object.")
@click.option("--set", "-s", "pairs", multiple=True, metavar="KEY=VALUE",
              help="One input (VALUE parsed as JSON when it is JSON); repeatable.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the run until it ends or waits for an approval (serving the app "
                   "here if no host is running).")
@click.option("--timeout", type=float, default=None, help="Give up waiting after seconds.")
@_APP
@_JSON
def run(name: str, raw: str | None, pairs: tuple[str, ...], wait: bool, timeout: float | None,
        appdir: Path, as_json: bool) -> None:
    """Start a run of workflow NAME; print its outcome (exit 1 if it did not succeed)."""
    from omnicore.workflows.service import default_actor

    inputs: dict[str, Any] = {}
    if raw:
        try:
            inputs = json.loads(raw)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
        if not isinstance(inputs, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--input")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE", param_hint="--set")
        try:
            inputs[key] = json.loads(value)
        except ValueError:
            inputs[key] = value
    with _app(appdir) as app:
        started = app.workflows.start(name, inputs, started_by=default_actor())
        _audit(app, "workflow.start", started.id, {"workflow": name})
    click.echo(f"run {started.id} of {name}: {started.state}", err=True)
    if wait:
        _follow(appdir, started.id, timeout, as_json)


_WAIT = click.option("--wait", is_flag=True,
                     help="Then follow the run until it ends or waits for someone (serving "
                          "the app here if no host is running).")


def _follow(appdir: Path, run_id: int, timeout: float | None, as_json: bool) -> None:
    """Until the run ends or only waits for people: on the running host, else served here."""
    from omnicore.app import OmniApp
    from omnicore.cli.remote import find_running

    with _app(appdir, load=False) as app:
        host = find_running(app.data_dir)
        if host is not None:
            _finish(app, _until_settled(app, run_id, timeout), as_json)
            return
    app = OmniApp(config_path=appdir / CONFIG_FILE, overrides={"console": {"enabled": False}})
    app.start()
    try:
        _finish(app, _until_settled(app, run_id, timeout), as_json)
    finally:
        app.stop()


def _until_settled(app: OmniApp, run_id: int, timeout: float | None) -> RunRecord:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = app.workflows.wait(run_id, app.config.workflows.poll_s)
        if run.state not in ("queued", "running"):
            return run
        steps = app.workflows.store.steps(run_id, outputs=False)
        if steps and all(s.state in ("waiting", "succeeded", "failed", "skipped", "cancelled")
                         for s in steps) and any(
                isinstance(s.wait, dict) and s.wait.get("kind") in ("approval", "event")
                and s.state == "waiting" for s in steps):
            return run  # only a person (or an event) can move it on
        if deadline is not None and time.monotonic() > deadline:
            return run


def _finish(app: OmniApp, final: RunRecord, as_json: bool) -> None:
    if as_json:
        _echo_json({**final.as_dict(),
                    "steps": [s.as_dict() for s in app.workflows.steps(final.id)]})
    else:
        _print_run(app, final, history=False)
    if final.state not in ("succeeded", "running"):
        sys.stdout.flush()
        raise click.exceptions.Exit(1)


@workflows.command("runs")
@click.argument("name", required=False)
@click.option("--run", "run_id", type=int, default=None, help="Show this run in detail.")
@click.option("--state", default=None,
              type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled",
                                 "skipped"]), help="Only runs in this state.")
@click.option("--history", is_flag=True, help="With --run: the run's whole audit trail.")
@click.option("--limit", type=int, default=20, show_default=True,
              help="At most this many runs.")
@_APP
@_JSON
def runs(name: str | None, run_id: int | None, state: str | None, history: bool, limit: int,
         appdir: Path, as_json: bool) -> None:
    """List runs (of NAME), newest first; --run ID shows one with its steps."""
    with _app(appdir, load=False) as app:
        if run_id is not None:
            found = app.workflows.get_run(run_id)
            if as_json:
                _echo_json({**found.as_dict(),
                            "steps": [s.as_dict() for s in app.workflows.steps(run_id)],
                            "history": [h.as_dict() for h in app.workflows.store.history(run_id)]
                            if history else None})
            else:
                _print_run(app, found, history)
            return
        items = app.workflows.runs(name, state, limit=limit)
    if as_json:
        _echo_json([r.as_dict() for r in items])
        return
    for r in items:
        click.echo(f"{r.id:<6} {r.workflow:<24} {r.state:<10} {_when(r.created_at)}  "
                   f"{r.started_by}" + (f"  {r.error}" if r.error else ""))


@workflows.command("approve")
@click.argument("run_id", type=int)
@click.argument("step")
@click.option("--reject", is_flag=True, help="Reject instead (the step fails).")
@click.option("--comment", default="", help="Recorded with the decision.")
@_WAIT
@_APP
def approve(run_id: int, step: str, reject: bool, comment: str, wait: bool,
            appdir: Path) -> None:
    """Approve (or --reject) STEP of run RUN_ID, which waits for an approval."""
    from omnicore.workflows.service import default_actor

    with _app(appdir, load=False) as app:
        row = app.workflows.approve(run_id, step, default_actor(), approve=not reject,
                                    comment=comment)
        _audit(app, "workflow.reject" if reject else "workflow.approve", run_id,
               {"step": step})
    click.echo(f"run {run_id} step {step}: {'rejected' if reject else 'approved'} by "
               f"{row.decided_by}", err=wait)
    if wait:
        _follow(appdir, run_id, None, False)


@workflows.command("cancel")
@click.argument("run_id", type=int)
@_APP
def cancel(run_id: int, appdir: Path) -> None:
    """Cancel run RUN_ID (and its sub-runs)."""
    from omnicore.workflows.service import default_actor

    with _app(appdir, load=False) as app:
        done = app.workflows.cancel(run_id, default_actor())
        if done:
            _audit(app, "workflow.cancel", run_id)
    if not done:
        raise click.ClickException(f"run {run_id} had already ended")
    click.echo(f"run {run_id}: cancelled")


@workflows.command("restart")
@click.argument("run_id", type=int)
@click.option("--latest", is_flag=True,
              help="On the workflow's current definition instead of the run's pinned version.")
@_WAIT
@_APP
def restart(run_id: int, latest: bool, wait: bool, appdir: Path) -> None:
    """Run failed or cancelled run RUN_ID again from its failed steps, keeping the others."""
    from omnicore.workflows.service import default_actor

    with _app(appdir, load=latest) as app:
        found = app.workflows.restart(run_id, default_actor(), latest=latest)
        _audit(app, "workflow.restart", run_id)
    click.echo(f"run {run_id}: {found.state} again (version {found.version[:12]})", err=wait)
    if wait:
        _follow(appdir, run_id, None, False)
