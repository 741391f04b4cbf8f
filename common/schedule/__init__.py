"""The pure scheduling core: schedules, fire times, misfires, jitter and backoff.

No I/O and no clock: every function takes the instants it needs. Instants are aware
datetimes; results are aware UTC datetimes.

Schedule kinds (`parse_schedule`): "now"; once at an ISO 8601 time ("at"); cron with 5
fields, or 6 with the optional SECONDS field FIRST (`sec min hour dom mon dow`, the
Quartz/Spring position), in crontab(5) semantics with an explicit DST policy
(`common.schedule.cron`); and fixed intervals ("every 5 minutes", PT5M), anchored at
the parse time (`common.schedule.interval`).
"""

from common.schedule.backoff import Backoff
from common.schedule.base import DstPolicy, Schedule
from common.schedule.cron import Cron, parse_cron
from common.schedule.interval import Interval, parse_interval
from common.schedule.jitter import jitter
from common.schedule.misfire import FirePlan, MisfirePolicy, plan_fires, start_deadline_missed
from common.schedule.once import Immediate, Once, parse_instant
from common.schedule.parse import KINDS, detect_kind, fire_times, parse_schedule

__all__ = [
    "KINDS",
    "Backoff",
    "Cron",
    "DstPolicy",
    "FirePlan",
    "Immediate",
    "Interval",
    "MisfirePolicy",
    "Once",
    "Schedule",
    "detect_kind",
    "fire_times",
    "jitter",
    "parse_cron",
    "parse_instant",
    "parse_interval",
    "parse_schedule",
    "plan_fires",
    "start_deadline_missed",
]
