"""`schedctl dev`: the local development cluster (up, status, down)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from common.db import Database
from common.devstack import health_of
from schedctl.context import handle_errors, table, to_json
from schedctl.devserver import INFO_FILE, serve
from schedctl.run_cmd import render, summary

DEFAULT_DIR = Path(os.environ.get("ZEITPLAN_DEV_DIR", f"/tmp/zeitplan-dev-{os.getuid()}"))
state_option = click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_DIR,
                            show_default=True, help="Where the cluster keeps data and logs "
                            "(also $ZEITPLAN_DEV_DIR).")


@click.group()
def dev() -> None:
    """The local cluster: 3 ZooKeeper, PostgreSQL primary + standby, 3 RabbitMQ,
    3 schedulerd and 2 workerd, on free 127.0.0.1 ports."""


def _info(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / INFO_FILE
    if not path.exists():
        return None
    info: dict[str, Any] = json.loads(path.read_text())
    try:
        os.kill(int(info["pid"]), 0)
    except OSError:
        return None
    return info


def _exports(info: dict[str, Any]) -> str:
    env = {**info["env"], "ZEITPLAN_DEV_DIR": info["state_dir"]}
    return "\n".join(f"export {k}='{v}'" for k, v in env.items())


@dev.command()
@state_option
@click.option("--detach", is_flag=True, help="Start in the background and print `export` "
              "lines for a shell: eval \"$(schedctl dev up --detach)\".")
@click.option("--demo/--no-demo", default=True, show_default=True,
              help="Create the demo jobs.")
@click.option("--view/--no-view", default=True, show_default=True,
              help="In the foreground, show a live view of the runs.")
@handle_errors
def up(state_dir: Path, detach: bool, demo: bool, view: bool) -> None:
    """Start the local cluster. In the foreground, Ctrl-C stops everything."""
    if _info(state_dir):
        raise click.UsageError(f"a cluster already runs from {state_dir}; "
                               "`schedctl dev down` stops it")
    if detach:
        _up_detached(state_dir, demo)
        return
    say = lambda line: click.echo(f"[dev] {line}", err=True)  # noqa: E731
    stop_view = threading.Event()
    views: list[threading.Thread] = []

    def ready(info: dict[str, Any]) -> None:
        click.echo("\nThe cluster is up. In another shell:\n" + _exports(info) + "\n"
                   "  schedctl job list; schedctl run watch; schedctl job cancel "
                   "long-job-cancel-me\nCtrl-C stops everything.\n", err=True)
        if view:
            views.append(threading.Thread(target=_live_view, args=(info, stop_view),
                                          daemon=True))
            views[0].start()

    def end_view() -> None:
        stop_view.set()
        for thread in views:
            thread.join(timeout=5)
    serve(state_dir, progress=say, demo=demo, ready=ready, before_stop=end_view)


def _live_view(info: dict[str, Any], stop: threading.Event) -> None:
    db = Database(info["env"]["ZEITPLAN_PG_DSN"], max_size=1, name="schedctl-view")
    time.sleep(2)
    while not stop.is_set():
        try:
            text = render(summary(db))
        except Exception as exc:  # noqa: BLE001 - the view must not end the cluster
            text = f"(view unavailable: {exc})"
        # On a terminal the view redraws in place; otherwise it appends (logs, CI).
        click.echo(("\x1b[2J\x1b[H" if sys.stderr.isatty() else "\n") + text, err=True)
        stop.wait(3.0)
    db.close()


def _up_detached(state_dir: Path, demo: bool) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir.parent / f"{state_dir.name}.devserver.log"
    argv = [sys.executable, "-m", "schedctl.main", "dev", "up", "--state-dir", str(state_dir),
            "--no-view", "--demo" if demo else "--no-demo"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    shown = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        lines = log.read_text(errors="replace").splitlines()
        for line in lines[shown:]:
            if line.startswith("[dev]"):
                click.echo(line, err=True)
        shown = len(lines)
        info = _info(state_dir)
        if info:
            click.echo(_exports(info))
            return
        if proc.poll() is not None:
            raise click.ClickException(f"the cluster failed to start; see {log}")
        time.sleep(0.3)
    proc.terminate()
    raise click.ClickException(f"the cluster did not start within 180 s; see {log}")


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


@dev.command()
@state_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def status(state_dir: Path, output: str) -> None:
    """Every process of the local cluster with its role, pid and ports."""
    info = _info(state_dir)
    if info is None:
        raise click.ClickException(f"no cluster runs from {state_dir}")
    rows: list[dict[str, Any]] = []
    daemons = {d["name"] for d in info["daemons"]}
    for svc in info["services"]:
        if svc["name"] in daemons:
            continue
        rows.append({"name": svc["name"], "kind": svc.get("kind", ""), "pid": svc.get("pid"),
                     "role": "running" if _alive(svc.get("pid")) else "down",
                     "ports": svc.get("ports", {})})
    for daemon in info["daemons"]:
        doc = (health_of(daemon["ports"]["http"]) or {}) if _alive(daemon["pid"]) else {}
        role = doc.get("role", "worker" if doc and daemon["kind"] == "workerd" else "down")
        rows.append({"name": daemon["name"], "kind": daemon["kind"], "pid": daemon["pid"],
                     "role": role, "ports": daemon["ports"]})
    if output == "json":
        click.echo(to_json(rows))
        return
    for row in rows:
        row["ports"] = ",".join(f"{k}={v}" for k, v in row["ports"].items())
    click.echo(table(rows, ["name", "kind", "role", "pid", "ports"]))


@dev.command()
@state_option
@handle_errors
def down(state_dir: Path) -> None:
    """Stop the local cluster started with --detach (every process it started)."""
    info = _info(state_dir)
    if info is None:
        click.echo(f"no cluster runs from {state_dir}")
        return
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    click.echo("stopped" if not _alive(pid) else f"still stopping (pid {pid})")
