from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common import config
from common.errors import ConfigError
from common.sections import HttpSection, ZooKeeperSection
from schedulerd.config import LeaderSection, SchedulerConfig
from workerd.config import WorkerConfig

REPO = Path(__file__).resolve().parents[2]

SCHEDULER_TOML = """
[node]
name = "sched-1"

[database]
dsn = "host=db1,db2 dbname=zeitplan target_session_attrs=read-write"

[zookeeper]
hosts = "zk1:2181,zk2:2181,zk3:2181"
session_timeout = 10

[broker]
urls = ["amqp://rmq1:5672/", "amqps://rmq2:5671/"]

[leader]
lookahead = 2.5
batch = 100
pools = ["default", "gpu"]

[http]
listen = "0.0.0.0:8080"

[log]
level = "debug"
format = "json"
"""

WORKER_TOML = """
[node]
name = "worker-1"

[zookeeper]
hosts = "zk1:2181"

[broker]
urls = ["amqp://rmq1:5672/"]

[worker]
pools = ["default"]
concurrency = 4

[sql.dsns]
reports = "host=reports dbname=r"
"""


@dataclass(frozen=True)
class FlagSection:
    enabled: bool = False
    tags: tuple[str, ...] = ()
    name: str = "x"
    count: int = 1
    ratio: float = 0.5


@dataclass(frozen=True)
class FlagConfig:
    flags: FlagSection = field(default_factory=FlagSection)


def write(tmp_path: Path, text: str, name: str = "daemon.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(cls: type[object], path: Path | None, env: Mapping[str, str] | None = None
                ) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(cls, path, env={} if env is None else env)
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


def one_problem_about(problems: list[str], key: str) -> str:
    matching = [p for p in problems if key in p]
    assert len(matching) == 1, (key, problems)
    return matching[0]


# --- loading a valid file -------------------------------------------------------------------

def test_a_valid_scheduler_file_loads_into_typed_sections(tmp_path: Path) -> None:
    cfg = config.load(SchedulerConfig, write(tmp_path, SCHEDULER_TOML), env={})
    assert cfg.node.name == "sched-1"
    assert cfg.database.dsn.startswith("host=db1,db2")
    assert cfg.database.pool_size == 4
    assert cfg.zookeeper.hosts == "zk1:2181,zk2:2181,zk3:2181"
    assert cfg.zookeeper.session_timeout == 10.0
    assert isinstance(cfg.zookeeper.session_timeout, float)
    assert cfg.zookeeper.root == "/zeitplan"
    assert cfg.broker.urls == ("amqp://rmq1:5672/", "amqps://rmq2:5671/")
    assert cfg.leader.lookahead == 2.5 and cfg.leader.batch == 100
    assert cfg.leader.pools == ("default", "gpu")
    assert cfg.http.address == ("0.0.0.0", 8080)
    assert (cfg.log.level, cfg.log.format) == ("debug", "json")


def test_a_loaded_config_is_frozen(tmp_path: Path) -> None:
    cfg = config.load(SchedulerConfig, write(tmp_path, SCHEDULER_TOML), env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.leader = cfg.leader  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.leader.batch = 1  # type: ignore[misc]


def test_a_valid_worker_file_loads_its_sql_dsns_as_a_read_only_mapping(tmp_path: Path) -> None:
    cfg = config.load(WorkerConfig, write(tmp_path, WORKER_TOML), env={})
    assert cfg.worker.slots == 4
    assert cfg.zookeeper.hosts == "zk1:2181"
    assert cfg.broker.urls == ("amqp://rmq1:5672/",)
    assert dict(cfg.sql.dsns) == {"reports": "host=reports dbname=r"}
    with pytest.raises(TypeError):
        cfg.sql.dsns["other"] = "x"  # type: ignore[index]


# --- every problem at once --------------------------------------------------------------------

def test_unknown_section_unknown_key_wrong_type_and_missing_key_are_reported_together(
        tmp_path: Path) -> None:
    path = write(tmp_path, """
[zookeeper]
hosts = "zk1:2181"
sesion_timeout = 5

[broker]
urls = "amqp://rmq1:5672/"

[leader]
batch = "lots"

[metrics]
port = 9100
""")
    problems = problems_of(SchedulerConfig, path)
    assert len(problems) == 5, problems
    assert all(p.startswith(f"{path}: ") for p in problems), problems
    assert "unknown section [metrics]" in one_problem_about(problems, "[metrics]")
    assert "unknown key 'zookeeper.sesion_timeout'" in one_problem_about(problems, "sesion")
    assert "must be a list of strings" in one_problem_about(problems, "'broker.urls'")
    assert "must be a whole number" in one_problem_about(problems, "'leader.batch'")
    missing = one_problem_about(problems, "'database.dsn'")
    assert "missing required key" in missing and "ZEITPLAN_DATABASE__DSN" in missing


def test_missing_required_keys_name_each_key_and_its_variable(tmp_path: Path) -> None:
    problems = problems_of(WorkerConfig, write(tmp_path, "[worker]\nconcurrency = 2\n"))
    assert sorted(problems) == sorted([
        f"{tmp_path / 'daemon.toml'}: missing required key 'zookeeper.hosts' "
        "(or set ZEITPLAN_ZOOKEEPER__HOSTS)",
        f"{tmp_path / 'daemon.toml'}: missing required key 'broker.urls' "
        "(or set ZEITPLAN_BROKER__URLS)",
    ])


def test_defaults_alone_report_the_required_keys_against_defaults() -> None:
    problems = problems_of(SchedulerConfig, None)
    assert len(problems) == 3
    assert all(p.startswith("<defaults>: missing required key") for p in problems)


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ('[zookeeper]\nhosts = 2181\n', "'zookeeper.hosts'", "must be a string"),
        ('[zookeeper]\nsession_timeout = "6s"\n', "'zookeeper.session_timeout'",
         "must be a number"),
        ('[zookeeper]\nsession_timeout = true\n', "'zookeeper.session_timeout'",
         "must be a number"),
        ("[leader]\nbatch = 1.5\n", "'leader.batch'", "must be a whole number"),
        ("[leader]\nbatch = true\n", "'leader.batch'", "must be a whole number"),
        ("[leader]\npools = [1, 2]\n", "'leader.pools'", "must be a list of strings"),
        ('[database]\npool_size = "4"\n', "'database.pool_size'", "must be a whole number"),
    ],
)
def test_a_value_of_the_wrong_type_names_key_and_file(
        tmp_path: Path, toml: str, key: str, expected: str) -> None:
    path = write(tmp_path, toml)
    problem = one_problem_about(problems_of(SchedulerConfig, path), key)
    assert problem.startswith(f"{path}: ") and expected in problem


def test_a_section_that_is_not_a_table_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "leader = 5\n")
    problem = one_problem_about(problems_of(SchedulerConfig, path), "[leader]")
    assert problem == f"{path}: [leader] must be a table"


def test_a_wrong_type_in_the_sql_dsns_table_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, WORKER_TOML + "broken = 5\n")
    problem = one_problem_about(problems_of(WorkerConfig, path), "'sql.dsns'")
    assert "must be a table of strings" in problem


def test_a_missing_file_is_one_problem_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    assert problems_of(SchedulerConfig, path) == [f"{path}: file not found"]


def test_a_file_that_is_not_toml_is_one_problem_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[zookeeper\nhosts = \n")
    problems = problems_of(SchedulerConfig, path)
    assert len(problems) == 1 and problems[0].startswith(f"{path}: not valid TOML")


# --- environment overrides ------------------------------------------------------------------

def test_environment_variables_override_every_kind_of_key(tmp_path: Path) -> None:
    env = {
        "ZEITPLAN_DATABASE__DSN": "host=elsewhere",
        "ZEITPLAN_LEADER__BATCH": "7",
        "ZEITPLAN_ZOOKEEPER__SESSION_TIMEOUT": "12.5",
        "ZEITPLAN_BROKER__URLS": "amqp://a:5672/, amqp://b:5672/,",
        "ZEITPLAN_LEADER__POOLS": "default",
    }
    cfg = config.load(SchedulerConfig, write(tmp_path, SCHEDULER_TOML), env=env)
    assert cfg.database.dsn == "host=elsewhere"
    assert cfg.leader.batch == 7
    assert cfg.zookeeper.session_timeout == 12.5
    assert cfg.broker.urls == ("amqp://a:5672/", "amqp://b:5672/")
    assert cfg.leader.pools == ("default",)
    assert cfg.leader.lookahead == 2.5  # not overridden: the file's value stays


def test_an_environment_variable_supplies_a_required_key_missing_from_the_file(
        tmp_path: Path) -> None:
    text = SCHEDULER_TOML.replace('dsn = "host=db1,db2', 'pool_size = 2\n#')
    cfg = config.load(SchedulerConfig, write(tmp_path, text),
                      env={"ZEITPLAN_DATABASE__DSN": "host=from-env"})
    assert (cfg.database.dsn, cfg.database.pool_size) == ("host=from-env", 2)


def test_environment_variables_alone_make_a_complete_config() -> None:
    env = {"ZEITPLAN_ZOOKEEPER__HOSTS": "zk:2181", "ZEITPLAN_BROKER__URLS": "amqp://r/",
           "ZEITPLAN_WORKER__CONCURRENCY": "3", "ZEITPLAN_NODE__NAME": "w9"}
    cfg = config.load(WorkerConfig, None, env=env)
    assert (cfg.node.name, cfg.worker.concurrency, cfg.broker.urls) == ("w9", 3, ("amqp://r/",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True),
     ("0", False), ("False", False), ("no", False), ("off", False)],
)
def test_a_boolean_key_is_set_from_the_environment(text: str, expected: bool) -> None:
    cfg = config.load(FlagConfig, None, env={"ZEITPLAN_FLAGS__ENABLED": text})
    assert cfg.flags.enabled is expected


def test_every_simple_type_is_set_from_the_environment() -> None:
    cfg = config.load(FlagConfig, None, env={
        "ZEITPLAN_FLAGS__TAGS": "a, b ,c", "ZEITPLAN_FLAGS__NAME": " spaced ",
        "ZEITPLAN_FLAGS__COUNT": "-3", "ZEITPLAN_FLAGS__RATIO": "1e-3"})
    assert cfg.flags == FlagSection(enabled=False, tags=("a", "b", "c"), name=" spaced ",
                                    count=-3, ratio=0.001)


def test_lower_case_variables_do_not_override() -> None:
    cfg = config.load(FlagConfig, None, env={"zeitplan_flags__count": "9"})
    assert cfg.flags.count == 1


@pytest.mark.parametrize(
    ("variable", "value", "key", "expected"),
    [
        ("ZEITPLAN_FLAGS__ENABLED", "maybe", "flags.enabled", "must be true or false"),
        ("ZEITPLAN_FLAGS__COUNT", "many", "flags.count", "must be a whole number"),
        ("ZEITPLAN_FLAGS__COUNT", "1.5", "flags.count", "must be a whole number"),
        ("ZEITPLAN_FLAGS__RATIO", "half", "flags.ratio", "must be a number"),
    ],
)
def test_a_bad_environment_value_is_reported_naming_the_variable(
        variable: str, value: str, key: str, expected: str) -> None:
    problems = problems_of(FlagConfig, None, env={variable: value})
    assert problems == [f"{variable}: {expected}, not {value!r} (for '{key}')"]


def test_bad_environment_values_are_reported_with_the_files_problems(tmp_path: Path) -> None:
    path = write(tmp_path, SCHEDULER_TOML + "\n[status]\nbatch = 0.5\n")
    problems = problems_of(SchedulerConfig, path, env={"ZEITPLAN_LEADER__BATCH": "x",
                                                       "ZEITPLAN_HTTP__LISTEN": "nope"})
    assert len(problems) == 3, problems
    assert one_problem_about(problems, "ZEITPLAN_LEADER__BATCH").startswith(
        "ZEITPLAN_LEADER__BATCH: must be a whole number")
    assert "'status.batch'" in one_problem_about(problems, "status.batch")
    assert "'http.listen' must be HOST:PORT, not 'nope'" in one_problem_about(
        problems, "http.listen")


def test_a_mapping_cannot_be_set_from_the_environment() -> None:
    env = {"ZEITPLAN_ZOOKEEPER__HOSTS": "zk", "ZEITPLAN_BROKER__URLS": "amqp://r/",
           "ZEITPLAN_SQL__DSNS": "reports=host=x"}
    problems = problems_of(WorkerConfig, None, env=env)
    assert problems == ["ZEITPLAN_SQL__DSNS: cannot be set from the environment "
                        "(for 'sql.dsns')"]


# --- section checks -------------------------------------------------------------------------

def last_line(value: object) -> str | None:
    return value.strip().splitlines()[-1] if isinstance(value, str) else None


ZK = '[zookeeper]\nhosts = "zk1:2181"\n'
BROKER = '[broker]\nurls = ["amqp://rmq1:5672/"]\n'


@pytest.mark.parametrize(
    ("section", "toml", "key"),
    [
        ("zookeeper", ZK + "session_timeout = 0.1\n", "'zookeeper.session_timeout'"),
        ("zookeeper", ZK + "session_timeout = 61\n", "'zookeeper.session_timeout'"),
        ("zookeeper", ZK + 'root = "zeitplan"\n', "'zookeeper.root'"),
        ("zookeeper", ZK + 'root = "/zeitplan/"\n', "'zookeeper.root'"),
        ("zookeeper", '[zookeeper]\nhosts = "  "\n', "'zookeeper.hosts'"),
        ("http", '[http]\nlisten = "nope"\n', "'http.listen'"),
        ("http", '[http]\nlisten = ":8080"\n', "'http.listen'"),
        ("http", '[http]\nlisten = "localhost:70000"\n', "'http.listen'"),
        ("broker", '[broker]\nurls = ["http://x"]\n', "'broker.urls'"),
        ("broker", "[broker]\nurls = []\n", "'broker.urls'"),
        ("broker", BROKER + "confirm_window = 0\n", "'broker.confirm_window'"),
        ("log", '[log]\nlevel = "loud"\n', "'log.level'"),
        ("log", '[log]\nformat = "xml"\n', "'log.format'"),
        ("leader", "[leader]\nlookahead = 0.1\n", "'leader.lookahead'"),
        ("leader", "[leader]\npoll_interval = 11\n", "'leader.poll_interval'"),
        ("leader", "[leader]\nbatch = 0\n", "'leader.batch'"),
        ("leader", "[leader]\nruns_per_message = 0\n", "'leader.runs_per_message'"),
        ("leader", "[leader]\nstale_after = 0\n", "stale_after"),
        ("leader", "[leader]\norphan_grace = -1\n", "orphan_grace"),
        ("leader", "[leader]\norphan_grace = 9\n", "'leader.orphan_grace'"),
    ],
    ids=last_line,
)
def test_a_scheduler_section_check_is_reported_naming_key_and_file(
        tmp_path: Path, section: str, toml: str, key: str) -> None:
    kept = [part for part in SCHEDULER_TOML.split("\n\n")
            if not part.strip().startswith(f"[{section}]")]
    path = write(tmp_path, "\n\n".join(kept) + "\n\n" + toml)
    problems = problems_of(SchedulerConfig, path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: [{section}] ") and key in problems[0], problems


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("pools = []\n", "'worker.pools'"),
        ("concurrency = -1\n", "'worker.concurrency'"),
        ("concurrency = 1025\n", "'worker.concurrency'"),
        ("heartbeat_interval = 0.01\n", "'worker.heartbeat_interval'"),
        ("kill_grace = -1\n", "'kill_grace'"),
        ("output_limit = 10\n", "'output_limit'"),
    ],
    ids=last_line,
)
def test_a_worker_section_check_is_reported_naming_key_and_file(
        tmp_path: Path, toml: str, key: str) -> None:
    path = write(tmp_path, WORKER_TOML.replace('pools = ["default"]\nconcurrency = 4\n', toml))
    problems = problems_of(WorkerConfig, path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: [worker] ") and key in problems[0], problems


def test_section_checks_accept_their_boundaries() -> None:
    assert ZooKeeperSection(hosts="zk", session_timeout=1.0).session_timeout == 1.0
    assert ZooKeeperSection(hosts="zk", session_timeout=60.0).session_timeout == 60.0
    assert HttpSection("[::1]:0").address == ("[::1]", 0)
    assert HttpSection("127.0.0.1:65535").address == ("127.0.0.1", 65535)


# --- the daemons' --check-config ------------------------------------------------------------

def check_config(program: str, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEITPLAN_")}
    return subprocess.run(
        [sys.executable, "-m", f"{program}.main", "--check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False)


BAD_TOML = """
[zookeeper]
hosts = "zk1:2181"
session_timeout = 0.1

[broker]
urls = "amqp://rmq1/"

[surprise]
x = 1
"""


@pytest.mark.parametrize(("program", "problems"), [("schedulerd", 4), ("workerd", 3)])
def test_check_config_on_a_bad_file_prints_one_line_per_problem_and_exits_2(
        tmp_path: Path, program: str, problems: int) -> None:
    path = write(tmp_path, BAD_TOML)
    result = check_config(program, path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == problems, lines
    assert all(line.startswith(f"{program}: config error: {path}: ") for line in lines), lines
    assert "Traceback" not in result.stderr
    assert any("unknown section [surprise]" in line for line in lines)
    assert any("'zookeeper.session_timeout'" in line for line in lines)
    assert any("'broker.urls' must be a list of strings" in line for line in lines)
    assert result.stdout == ""


@pytest.mark.parametrize(("program", "toml"),
                         [("schedulerd", SCHEDULER_TOML), ("workerd", WORKER_TOML)])
def test_check_config_on_a_good_file_says_so_and_exits_0(
        tmp_path: Path, program: str, toml: str) -> None:
    path = write(tmp_path, toml)
    result = check_config(program, path)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stdout.strip() == f"{program}: config {path} is valid"
    assert result.stderr == ""


def test_check_config_on_a_missing_file_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    result = check_config("schedulerd", path)
    assert result.returncode == 2
    assert result.stderr == f"schedulerd: config error: {path}: file not found\n"


@pytest.mark.parametrize(("lookahead", "poll", "ahead"),
                         [(5.0, 0.5, 0.25), (0.5, 0.5, 0.25), (300.0, 10.0, 1.0), (5.0, 0.01, 0.0)])
def test_the_leader_loads_runs_until_its_next_refill_and_no_further_than_the_lookahead(
        lookahead: float, poll: float, ahead: float) -> None:
    leader = LeaderSection(lookahead=lookahead, poll_interval=poll, dispatch_ahead=ahead)
    # Due before the next refill (a poll interval, dispatched `ahead` early) and a slow
    # cycle's worth more; never runs the recorder has not recorded yet.
    assert leader.refill_reach >= min(lookahead, 2 * poll + ahead)
    assert leader.refill_reach <= lookahead
    if lookahead > 2 * poll + ahead:  # not the whole lookahead when less will do
        assert leader.refill_reach < lookahead
