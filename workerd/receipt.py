"""How a run message is settled once its attempt is decided.

A delivery carries one run message or a pack of several (the leader packs runs of one
queue that are due together). The delivery is acknowledged after the last of its runs is
settled, so the acknowledgement still follows every outcome published for it. A run of a
pack cannot go back to the queue alone: it is published again, marked as returned, and the
worker that gets it leaves the decision to the schedulers, as for a redelivered message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from common import broker as topo
from common.messages import RunMessage, encode
from workerd.outbox import Action, Publish, Settle

RETURNED = "x-zeitplan-returned"  # header of a run given back out of a pack


@dataclass
class Pack:
    """The runs of one delivery still to be settled."""

    remaining: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def settle_one(self) -> bool:
        """Count one run as settled; True for the last."""
        with self._lock:
            self.remaining -= 1
            return self.remaining == 0


@dataclass(frozen=True)
class Receipt:
    """Run `message` of delivery `tag` on connection `generation`; `raw` is the delivery's
    body when it carries this run alone."""

    tag: int
    generation: int
    routing_key: str
    message: RunMessage
    raw: bytes | None = None
    pack: Pack | None = None

    @property
    def body(self) -> bytes:
        """This run's own message, as published (encoded only when needed: a retry tier,
        the dead letters, or going back out of a pack)."""
        return self.raw if self.raw is not None else encode(self.message)

    def done(self) -> list[Action]:
        """Acknowledge, after whatever was queued before: the delivery, once every run it
        carries is done."""
        if self.pack is None or self.pack.settle_one():
            return [Settle(self.tag, self.generation)]
        return []

    def give_back(self) -> list[Action]:
        """Return the run unstarted: the delivery back to its queue, or this run of a pack
        published again, marked as returned."""
        if self.pack is None:
            return [Settle(self.tag, self.generation, ack=False, requeue=True)]
        return [Publish(topo.RUNS, self.routing_key, self.body, self.message.attempt_id,
                        {RETURNED: "1"}, self.generation), *self.done()]
