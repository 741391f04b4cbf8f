"""schedctl: the Zeitplan admin command line."""

from __future__ import annotations

import logging

import click

from schedctl.db_cmd import db
from schedctl.dev_cmd import dev
from schedctl.job_cmd import job
from schedctl.run_cmd import run
from schedctl.schedule_cmd import schedule


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zeitplan")
def cli() -> None:
    """Zeitplan admin CLI: jobs, runs, schedules, the database and the local cluster.

    Connection settings come from options or the environment ($ZEITPLAN_PG_DSN,
    $ZEITPLAN_AMQP_URLS); `eval "$(schedctl dev up --detach)"` sets them for a local cluster.
    """


for group in (job, run, schedule, db, dev):
    cli.add_command(group)
# The pool retries in the background; a command reports a failure itself, once.
logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)

if __name__ == "__main__":
    cli()
