"""``omnicore kv`` and ``omnicore jobs``: an operator's view of an app's durable state.

``omnicore tasks`` is the old name of ``omnicore jobs`` (the durable queue's rows are jobs:
specs/host.md's glossary): the same commands, with one deprecation line on stderr.

Both open the app's storage (``<data_dir>/omnicore.db``) directly, so they work whether or not
``omnicore run`` is serving the app (SQLite's WAL lets them read and write beside it). Every
change is recorded in the app's audit log (origin ``cli``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from omnicore.cli.appdata import app_option, app_storage, load_app_config
from omnicore.cli.main import main

__all__ = ["jobs", "kv", "tasks"]

_APP = app_option()


def _audit(store: Any, verb: str, target: str, before: Any = None, after: Any = None) -> None:
    from omnicore.accounts.audit import Actor, record

    record(store, Actor.cli(), verb, target, before, after)


@main.group()
def kv() -> None:
    """Read and change plugins' keys (omnicore:kv)."""


@kv.command("list")
@click.argument("plugin")
@click.argument("prefix", default="")
@_APP
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def kv_list(plugin: str, prefix: str, appdir: Path, as_json: bool) -> None:
    """List PLUGIN's keys starting with PREFIX (sorted, at most 1,000)."""
    with app_storage(appdir) as store:
        keys = store.kv(plugin).list(prefix)
    if as_json:
        click.echo(json.dumps(keys, ensure_ascii=False))
    else:
        for key in keys:
            click.echo(key)


def _key_command(name: str, *more: Callable[[Any], Any]) -> Callable[[Any], click.Command]:
    """A ``kv`` command on one key of a plugin: PLUGIN KEY, then ``more`` parameters, then the
    app option (get, set and delete take them alike)."""

    def command(f: Any) -> click.Command:
        for param in reversed((click.argument("plugin"), click.argument("key"), *more, _APP)):
            f = param(f)
        return kv.command(name)(f)

    return command


@_key_command("get")
def kv_get(plugin: str, key: str, appdir: Path) -> None:
    """Print the value of KEY (bytes, unchanged)."""
    with app_storage(appdir) as store:
        value = store.kv(plugin).get(key)
    if value is None:
        raise click.ClickException(f"plugin '{plugin}' has no key {key!r}")
    sys.stdout.buffer.write(value)
    if sys.stdout.isatty() and not value.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


@_key_command("set", click.argument("value", required=False),
              click.option("--value-file", type=click.File("rb"),
                           help="Read the value from F ('-': stdin)."))
def kv_set(plugin: str, key: str, value: str | None, value_file: Any, appdir: Path) -> None:
    """Set KEY to VALUE (text) or to the bytes of --value-file. No quota: you are the operator."""
    if (value is None) == (value_file is None):
        raise click.UsageError("give VALUE or --value-file, one of them")
    data = value.encode() if value is not None else value_file.read()
    if not 0 < len(key.encode()) <= 512:
        raise click.UsageError("a key is 1-512 bytes of UTF-8")
    with app_storage(appdir) as store:
        old = store.kv(plugin).get(key)
        store.kv(plugin).set(key, data)
        _audit(store, "kv.set", f"{plugin}/{key}",
               None if old is None else {"bytes": len(old)}, {"bytes": len(data)})


@_key_command("delete")
def kv_delete(plugin: str, key: str, appdir: Path) -> None:
    """Delete KEY; an absent key is an error."""
    with app_storage(appdir) as store:
        old = store.kv(plugin).get(key)
        if not store.kv(plugin).delete(key):
            raise click.ClickException(f"plugin '{plugin}' has no key {key!r}")
        _audit(store, "kv.delete", f"{plugin}/{key}",
               None if old is None else {"bytes": len(old)})


@main.group()
def jobs() -> None:
    """Durable plugin jobs (omnicore:tasks, schedules, durable events): list, retry, cancel."""


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@jobs.command("list")
@click.option("--plugin", help="Only this plugin's jobs.")
@click.option("--state", type=click.Choice(["queued", "running", "succeeded", "dead",
                                            "cancelled"]), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="At most this many jobs.")
@_APP
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def jobs_list(plugin: str | None, state: str | None, limit: int, appdir: Path,
               as_json: bool) -> None:
    """List jobs, newest first."""
    with app_storage(appdir) as store:
        found = store.queue.list(plugin=plugin, states=(state,) if state else (), limit=limit)
    if as_json:
        click.echo(json.dumps([t.as_dict() for t in found]))
        return
    click.echo(f"{'ID':>6}  {'STATE':<9}  {'TRIES':>5}  {'OWNER':<19}  {'RUN AT':<19}  "
               "PLUGIN.HANDLER  ERROR")
    for t in found:
        error = (t.last_error or "").splitlines()[0][:60] if t.last_error else ""
        click.echo(f"{t.id:>6}  {t.state:<9}  {t.attempts:>2}/{t.max_attempts:<2}  "
                   f"{t.owner or '-':<19}  {_when(t.run_at):<19}  {t.plugin}.{t.handler}  "
                   f"{error}")


@jobs.command("enqueue")
@click.argument("plugin")
@click.argument("handler")
@click.argument("payload", default="")
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds before it is due.")
@click.option("--digest", metavar="sha256:HEX",
              help="Run it on this version of PLUGIN only (a digest omnicore plugins versions "
                   "lists, or one a host serves): only a host serving it claims the job.")
@_APP
def jobs_enqueue(plugin: str, handler: str, payload: str, delay: float, digest: str | None,
                 appdir: Path) -> None:
    """Queue HANDLER(PAYLOAD) of PLUGIN, as a plugin's own enqueue would.

    Through the running host's REST API when one serves the app (it refuses a handler the
    plugin lacks and runs the job at once); else into the storage, where a host picks it up
    within capabilities.jobs.poll_s. Retries and backoff are the app's capabilities.jobs
    defaults; a handler the plugin lacks then ends the job dead with the reason (jobs show).
    """
    from omnicore.cli.remote import running_host

    _, host = running_host(appdir)  # found without loading the host's config schema
    if host is not None:  # the host checks the handler, records it and wakes its workers
        body: dict[str, Any] = {"plugin": plugin, "handler": handler, "payload": payload,
                                "delay_s": delay}
        if digest is not None:
            body["digest"] = digest
        doc = host.request("POST", "/api/v1/jobs", body)
        click.echo(f"job {doc['id']} queued: {plugin}.{handler}")
        return
    from omnicore.errors import PluginNotFound
    from omnicore.jobs.service import check_digest
    from omnicore.storage import JobSpec

    defaults = load_app_config(appdir).capabilities.jobs
    with app_storage(appdir) as store:
        if digest is not None:
            try:
                digest = check_digest(store, plugin, digest)
            except (ValueError, PluginNotFound) as exc:
                raise click.ClickException(str(exc)) from None
        spec = JobSpec(plugin, handler, payload.encode(), time.time() + delay,
                       defaults.max_attempts, defaults.backoff_ms, "operator", 0, digest)
        job_id = store.queue.add(spec)
        _audit(store, "task.enqueue", f"task:{job_id}", None,
               {"plugin": plugin, "handler": handler, "bytes": len(spec.payload),
                **({"digest": digest} if digest is not None else {})})
    click.echo(f"job {job_id} queued: {plugin}.{handler}" +
               (f" on {digest[:19]}" if digest is not None else ""))


@jobs.command("show")
@click.argument("job_id", type=int)
@_APP
def jobs_show(job_id: int, appdir: Path) -> None:
    """Everything about one job, as JSON."""
    with app_storage(appdir) as store:
        job = store.queue.get(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    click.echo(json.dumps(job.as_dict(payload_preview=4096), indent=2))


def _refused(store: Any, job_id: int, only: str) -> click.ClickException:
    """Why job ``job_id`` stayed as it was: there is none, or ``only`` (its state is not)."""
    job = store.queue.get(job_id)
    return click.ClickException(f"no job {job_id}" if job is None else
                                f"job {job_id} is {job.state}: only {only}")


@jobs.command("retry")
@click.argument("job_id", type=int)
@_APP
def jobs_retry(job_id: int, appdir: Path) -> None:
    """Queue a dead or cancelled job again, with fresh attempts."""
    with app_storage(appdir) as store:
        if not store.queue.retry(job_id, time.time()):
            raise _refused(store, job_id, "dead or cancelled jobs can be retried")
        _audit(store, "task.retry", f"task:{job_id}")
    click.echo(f"job {job_id} queued")


@jobs.command("cancel")
@click.argument("job_id", type=int)
@_APP
def jobs_cancel(job_id: int, appdir: Path) -> None:
    """Cancel a queued job (a running one finishes)."""
    with app_storage(appdir) as store:
        if not store.queue.cancel(job_id, time.time()):  # None: no such job
            raise _refused(store, job_id, "queued jobs can be cancelled")
        _audit(store, "task.cancel", f"task:{job_id}")
    click.echo(f"job {job_id} cancelled")


class _OldName(click.Group):
    """A group under its name from before a rename: the same commands, one line on stderr."""

    def __init__(self, name: str, new: click.Group) -> None:
        super().__init__(name, commands=new.commands, hidden=True,
                         help=f"Old name of `omnicore {new.name}` (deprecated).")
        self.new_name = new.name

    def invoke(self, ctx: click.Context) -> Any:
        click.echo(f"omnicore {self.name} is deprecated: use omnicore {self.new_name} "
                   "(the same commands)", err=True)
        return super().invoke(ctx)


tasks = _OldName("tasks", jobs)
main.add_command(tasks)
