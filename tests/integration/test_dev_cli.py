"""`schedctl dev up --detach`, `dev status`, jobs through the CLI, `dev down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import alive, wait_for

pytestmark = pytest.mark.timeout(300)


def schedctl(*args: str, env: dict[str, str], check: bool = True
             ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "schedctl.main", *args], env=env,
                            capture_output=True, text=True, timeout=240)
    if check and result.returncode != 0:
        pytest.fail(f"schedctl {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def test_a_detached_dev_cluster_runs_jobs_from_the_cli_and_stops_completely(
        state_dir: Path) -> None:
    env = {**os.environ, "ZEITPLAN_DEV_DIR": str(state_dir / "dev")}
    up = schedctl("dev", "up", "--detach", "--no-demo", env=env)
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in up.stdout.splitlines() if line.startswith("export "))
    env.update({k: v.strip("'") for k, v in exports.items()})
    assert {"ZEITPLAN_PG_DSN", "ZEITPLAN_AMQP_URLS", "ZEITPLAN_ZK_HOSTS"} <= set(exports)
    try:
        processes: list[dict[str, Any]] = json.loads(
            schedctl("dev", "status", "-o", "json", env=env).stdout)
        roles = sorted(p["role"] for p in processes if p["kind"] == "schedulerd")
        assert roles == ["leader", "standby", "standby"]
        assert sum(1 for p in processes if p["kind"] == "workerd") == 2
        assert {p["kind"] for p in processes} >= {"zookeeper", "postgres", "rabbitmq"}
        assert all(p["role"] != "down" and p["pid"] for p in processes)
        created = json.loads(schedctl("job", "create", "--name", "cli", "--shell", "echo hi",
                                      "--now", "-o", "json", env=env).stdout)

        def finished() -> bool:
            listed = json.loads(schedctl("run", "list", "--job", str(created["id"]), "-o",
                                         "json", env=env).stdout)
            return bool(listed) and listed[0]["state"] == "succeeded"
        wait_for(finished, 60, "the CLI's job to succeed", every=0.5)
        logs = schedctl("run", "logs", str(json.loads(schedctl(
            "run", "list", "--job", "cli", "-o", "json", env=env).stdout)[0]["id"]), env=env)
        assert logs.stdout == "hi\n"
        bad = schedctl("job", "create", "--name", "x", "--shell", "true", "--cron",
                       "* 25 * * *", env=env, check=False)
        assert bad.returncode == 2 and "hour field" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        schedctl("dev", "down", env=env)
    pids = [p["pid"] for p in processes if p["pid"]]
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, "every process to stop")
    again = schedctl("dev", "status", env=env, check=False)
    assert again.returncode != 0 and "no cluster" in again.stderr
