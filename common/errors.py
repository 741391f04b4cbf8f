"""One error tree for Zeitplan.

Adapters translate library exceptions at their boundary into these classes; loops and
commands catch the families here, never a library's own types.
"""

from __future__ import annotations


class ZeitplanError(Exception):
    """Base of every error Zeitplan raises on purpose."""


class InvalidInput(ZeitplanError):
    """User input that cannot be accepted; the message says what and where."""


class ScheduleError(InvalidInput):
    """A schedule expression, time zone or fire-time policy that cannot be used."""


class ConfigError(InvalidInput):
    """One or more configuration problems, each naming its key and file."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class MessageError(InvalidInput):
    """A broker message that does not match its schema."""


class InvalidTransition(ZeitplanError):
    """A run state change that the state machine does not allow."""


class ServiceError(ZeitplanError):
    """A backing service (database, broker, coordination) failed or is unreachable."""


class DatabaseError(ServiceError):
    """PostgreSQL failed or is unreachable."""


class DataRefused(DatabaseError):
    """PostgreSQL refused a statement's data (SQLSTATE classes 22 and 23): trying again
    cannot help, unlike for the other database errors."""


class BrokerError(ServiceError):
    """RabbitMQ failed or is unreachable."""


class Unroutable(BrokerError):
    """RabbitMQ returned a message: no queue is bound for its routing key."""


class CoordinationError(ServiceError):
    """ZooKeeper failed or is unreachable."""


class FencedOut(ZeitplanError):
    """This node's leadership epoch is no longer the current one: it must not dispatch."""


class HarnessError(ZeitplanError):
    """The local cluster harness could not start, stop or reach a service."""
