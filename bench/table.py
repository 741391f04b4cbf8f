"""The table of figures: each with its ratio to the raw round trip, its target from the
issue and the verdict, and the load average it was measured under (pure: doc in, rows out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import targets as t
from bench.targets import Target, Verdict, judge, number

MB = 1e6 / 1024  # KiB per MB


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    figure: str
    value: str
    vs_raw: str = ""
    target: str = ""
    verdict: str = ""
    load: str = ""
    met: bool | None = None


def _load(result: dict[str, Any] | None) -> str:
    pair = (result or {}).get("load")
    return f"{pair[0]:.1f} → {pair[1]:.1f}" if pair else ""


def _ratio(result: dict[str, Any]) -> str:
    ratio = result.get("ratio_to_raw")
    return f"{ratio:.3f}" if ratio is not None else ""


def _row(figure: str, value: str, result: dict[str, Any] | None, *,
         checks: Sequence[tuple[Target, float | None, bool]] = (),
         vs_raw: str = "") -> Row:
    """A row judged against each (target, value, value-is-a-lower-bound) of `checks`."""
    verdicts: list[Verdict] = [judge(tg, v, lower_bound=lb) for tg, v, lb in checks]
    met = None
    if verdicts and all(v.met is not None for v in verdicts):
        met = all(v.met for v in verdicts)
    return Row(figure, value, vs_raw, "; ".join(tg.text for tg, _, _ in checks),
               "; ".join(v.text for v in verdicts), _load(result), met)


def _ms3(summary: dict[str, Any]) -> str:
    bound = "≥ " if summary.get("lower_bound") else ""
    return (f"{bound}{number(summary['p50'])} / {bound}{number(summary['p99'])} / "
            f"{bound}{number(summary['max'])} ms")


def _mb(kib: int) -> str:
    return f"{kib / MB:,.0f} MB"


def rows(doc: dict[str, Any]) -> list[Row]:
    """Every figure of the record, in the issue's order."""
    out: list[Row] = []
    session = float(doc["config"].get("session_timeout_s", 6.0))
    for label, raw, tp in (("1 RabbitMQ node", doc.get("raw_broker"), doc.get("throughput")),
                           ("3-node RabbitMQ cluster", (doc.get("throughput3") or {})
                            .get("raw_broker"), doc.get("throughput3"))):
        out += _throughput_rows(label, raw, tp or {}, three=label.startswith("3"))
    out += _lateness_rows(doc)
    out += _schedules_rows(doc.get("schedules"))
    out += _memory_rows(doc)
    out += _failover_rows(doc.get("failover"), session)
    out += _outage_rows(doc.get("outage"))
    out += _peer_rows(doc.get("peer"))
    return out


def _throughput_rows(label: str, raw: dict[str, Any] | None, tp: dict[str, Any],
                     *, three: bool) -> list[Row]:
    out: list[Row] = []
    if raw:
        out.append(_row(f"Raw broker round trip, {label} ({raw['messages']:,} messages)",
                        f"{raw['round_trip_per_s']:,.0f} msg/s", raw, vs_raw="1.00"))
        out.append(_row(f"Raw publish waiting for each confirm, {label}",
                        f"{raw['confirm_each_per_s']:,.0f} msg/s", raw,
                        vs_raw=f"{raw['confirm_each_per_s'] / raw['round_trip_per_s']:.3f}"))
    for job_type in ("python", "shell"):
        r = tp.get(job_type)
        if not r:
            continue
        flag = "" if r["complete"] else " (INCOMPLETE)"
        checks: list[tuple[Target, float | None, bool]] = []
        if job_type == "python":
            checks.append((t.E2E_RATIO, r.get("ratio_to_raw"), False))
            if three:
                checks.append((t.E2E_RATE_3NODE, r["runs_per_s"], False))
        out.append(_row(f"End to end, {r['jobs']:,} no-op `{job_type}` runs, {label}{flag}",
                        f"{r['runs_per_s']:,.0f} runs/s", r, checks=checks,
                        vs_raw=_ratio(r)))
    return out


def _lateness_rows(doc: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for r in (doc.get("lateness") or {}).get("runs", []):
        s = r.get("start_ms")
        if not s:
            continue
        target = t.LATENESS.get(float(r["rate_per_s"]))
        checks = [(target, float(s["p99"]), False)] if target else []
        flag = "" if r["complete"] else " (INCOMPLETE)"
        out.append(_row(f"Start lateness at {r['rate_per_s']:,.0f} runs/s ({s['count']:,} "
                        f"runs), p50 / p99 / max{flag}", _ms3(s), r, checks=checks))
    return out


def _schedules_rows(r: dict[str, Any] | None) -> list[Row]:
    if not r:
        return []
    where = (f"{r['jobs']:,} cron jobs every minute ({r['fires_per_s']:,.0f} fires/s) "
             f"for {r['minutes']} min")
    out = [_row(f"Many schedules: {where}: fires recorded / expected (before due)",
                f"{r['recorded']:,} / {r['expected']:,} ({r['recorded_in_time']:,})", r)]
    s = r.get("start_ms")
    if s:
        out.append(_row("Many schedules: start lateness p50 / p99 / max", _ms3(s), r,
                        checks=[(t.CRON_P99, float(s["p99"]), bool(s["lower_bound"]))]))
    q = r.get("queued_ms")
    if q:
        out.append(_row("Many schedules: dispatch lateness (queued_at) p50 / p99 / max",
                        _ms3(q), r))
    return out


def _memory_rows(doc: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    mem = doc.get("memory") or {}
    idle = mem.get("idle")
    if idle:
        kinds = idle.get("kinds", {})
        sched = max((v for k, v in idle["peak_kib"].items() if kinds.get(k) == "schedulerd"),
                    default=0)
        work = max((v for k, v in idle["peak_kib"].items() if kinds.get(k) == "workerd"),
                   default=0)
        out.append(_row("Peak RSS at idle: largest schedulerd / largest workerd",
                        f"{_mb(sched)} / {_mb(work)}", idle,
                        checks=[(t.WORKERD_MB, work / MB, False)]))
    rss = (doc.get("throughput") or {}).get("rss")
    if rss:
        out.append(_row("Peak RSS during the throughput runs: leader / largest schedulerd / "
                        "largest workerd", f"{_mb(rss['leader_kib'])} / "
                        f"{_mb(rss['schedulerd_max_kib'])} / {_mb(rss['workerd_max_kib'])}",
                        (doc.get("throughput") or {}).get("python"),
                        checks=[(t.WORKERD_MB, rss["workerd_max_kib"] / MB, False)]))
    stored = mem.get("jobs")
    if stored:
        out.append(_row(f"Peak RSS with {stored['jobs']:,} jobs stored: leader / largest "
                        f"schedulerd / largest workerd", f"{_mb(stored['leader_kib'])} / "
                        f"{_mb(stored['schedulerd_max_kib'])} / "
                        f"{_mb(stored['workerd_max_kib'])}", stored,
                        checks=[(t.SCHEDULERD_MB, stored["schedulerd_max_kib"] / MB, False),
                                (t.WORKERD_MB, stored["workerd_max_kib"] / MB, False)]))
    return out


def _failover_rows(r: dict[str, Any] | None, session: float) -> list[Row]:
    if not r:
        return []
    out: list[Row] = []
    for key, target in (("sigkill", t.failover_kill(session)), ("sigterm", t.FAILOVER_TERM)):
        f = r.get(key)
        if f:
            out.append(_row(f"Failover after {key.upper()} to the first dispatch, median / "
                            f"worst of {len(f['trials'])} (session timeout {session:g} s)",
                            f"{f['median_s']:.2f} / {f['worst_s']:.2f} s", r,
                            checks=[(target, f["worst_s"], False)]))
    return out


def _outage_rows(r: dict[str, Any] | None) -> list[Row]:
    """The issue names no target for these: no verdict."""
    out: list[Row] = []
    rabbit = (r or {}).get("rabbitmq")
    if rabbit:
        n = len(rabbit["trials"])
        value, of = ((f"{rabbit['median_s']:.2f} / {rabbit['worst_s']:.2f} s",
                      f", median / worst of {n}") if n > 1 else
                     (f"{rabbit['worst_s']:.2f} s", ""))
        out.append(_row(f"RabbitMQ node loss (SIGKILL of the run queue's leader, 3 nodes) to "
                        f"the first successful dispatch{of}", value, rabbit))
    pg = (r or {}).get("postgres")
    if pg:
        out.append(_row("PostgreSQL failover (SIGKILL of the primary, standby promoted at "
                        "once) to the first successful dispatch: first claim / first start",
                        f"{pg['to_queued_s']:.2f} / {pg['seconds']:.2f} s", pg))
    return out


def _peer_rows(r: dict[str, Any] | None) -> list[Row]:
    if not r or "celery" not in r:
        return []
    c = r["celery"]
    z = r["zeitplan"]
    out = [_row(f"Celery {c['version']}: end to end, {c['tasks']:,} no-op tasks",
                f"{c['tasks_per_s']:,.0f} tasks/s", c, vs_raw=_ratio(c)),
           _row(f"Zeitplan / Celery throughput ({z['runs_per_s']:,.0f} / "
                f"{c['tasks_per_s']:,.0f})", number(r.get("zeitplan_over_celery") or 0, "x"),
                c, checks=[(t.CELERY_RATIO, r.get("zeitplan_over_celery"), False)])]
    zp = (r.get("zeitplan_periodic") or {}).get("start_ms")
    cp = (c.get("periodic") or {}).get("start_ms")
    if zp and cp:
        verdict = t.lower_is_better("Celery's", float(zp["p99"]), float(cp["p99"]))
        out.append(Row(f"1-s periodic start lateness p50 / p99 / max: Zeitplan, then Celery "
                       f"({r['zeitplan_periodic']['seconds']:g} s each)",
                       f"{_ms3(zp)}; {_ms3(cp)}", "", "Zeitplan's p99 lower than Celery's",
                       verdict.text, _load(c), verdict.met))
    return out
