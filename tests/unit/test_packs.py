"""Packs of runs: the leader groups runs of one queue into a message; a worker splits the
delivery into its runs and acknowledges it only after the last of them is settled."""

from __future__ import annotations

import threading
from typing import cast

from common import broker as topo
from common.broker import Delivery
from common.messages import RunMessage, decode, decode_batch, encode, encode_pack
from schedulerd.planner import packs
from tests.unit.test_executor_hold import Recorder
from tests.unit.test_executor_hold import delivery as single_delivery
from workerd.attempt import AttemptRunner, Slot
from workerd.executor import Executor
from workerd.outbox import Outbox, Publish, Settle
from workerd.receipt import RETURNED, Pack, Receipt


def run(run_id: int) -> RunMessage:
    message = decode(single_delivery(run_id, not_before=None).body)
    assert isinstance(message, RunMessage)
    return message


def test_runs_are_packed_per_routing_key_in_order_and_up_to_the_size() -> None:
    keys = ["a.normal", "a.high", "a.normal", "a.normal", "b.normal", "a.normal"]
    assert packs(keys, 2) == [[0, 2], [3, 5], [1], [4]]
    assert sorted(packs(keys, 1)) == [[0], [1], [2], [3], [4], [5]]
    assert packs([], 10) == []


def test_a_pack_of_one_is_a_plain_run_message_and_a_larger_one_a_list() -> None:
    one = run(1)
    assert encode_pack([one]) == encode(one)
    assert [m.run_id for m in decode_batch(encode_pack([run(1), run(2)]))
            if isinstance(m, RunMessage)] == [1, 2]


def receipt(pack: Pack | None) -> Receipt:
    return Receipt(7, 3, "default.normal", run(9), None if pack else b"{}", pack)


def test_a_delivery_is_acknowledged_once_after_the_last_of_its_runs() -> None:
    pack = Pack(3)
    parts = [receipt(pack) for _ in range(3)]
    assert parts[0].done() == [] and parts[1].done() == []
    assert parts[2].done() == [Settle(7, 3)]
    assert receipt(None).done() == [Settle(7, 3)]


def test_a_run_of_a_pack_goes_back_alone_marked_as_returned() -> None:
    pack = Pack(2)
    part = receipt(pack)
    back = part.give_back()
    assert back == [Publish(topo.RUNS, "default.normal", encode(part.message), "9.1",
                            {RETURNED: "1"}, 3)]
    assert receipt(pack).done() == [Settle(7, 3)]  # the other one settles the delivery
    assert receipt(None).give_back() == [Settle(7, 3, ack=False, requeue=True)]


class Keeper(Recorder):
    """Notes each run's receipt."""

    def __init__(self) -> None:
        super().__init__()
        self.receipts: dict[int, Receipt] = {}
        self.lock = threading.Lock()

    def handle(self, delivery: Delivery, receipt: Receipt, slot: Slot, cancelled: bool) -> None:
        with self.lock:
            self.receipts[receipt.message.run_id] = receipt
        super().handle(delivery, receipt, slot, cancelled)


def test_the_executor_runs_every_run_of_a_pack_each_with_its_own_body() -> None:
    keeper, outbox = Keeper(), Outbox()
    ex = Executor(cast(AttemptRunner, keeper), outbox, 2)
    ex.start()
    body = encode_pack([run(1), run(2), run(3)])
    ex.submit(Delivery(11, body, "q", "default.normal", False, 0, {}, "1.1"), generation=4)
    keeper.wait_for(3, 5)
    assert {r.tag for r in keeper.receipts.values()} == {11}
    assert {decode(r.body).run_id for r in keeper.receipts.values()  # type: ignore[union-attr]
            } == {1, 2, 3}
    done = [a for r in keeper.receipts.values() for a in r.done()]
    assert done == [Settle(11, 4)]


def test_a_pack_holding_anything_but_runs_is_dead_lettered_whole() -> None:
    outbox = Outbox()
    ex = Executor(cast(AttemptRunner, Recorder()), outbox, 1)  # not started: no slot runs
    bad = b"[" + encode(run(1)) + b',{"v": 1, "type": "cancel", "run_id": 1, "job_id": null}]'
    ex.submit(Delivery(5, bad, "q", "default.normal", False, 0, {}, None), generation=1)
    ex.submit(Delivery(6, b"[]", "q", "default.normal", False, 0, {}, None), generation=1)
    assert outbox.take(10) == [Settle(5, 1, ack=False, requeue=False),
                               Settle(6, 1, ack=False, requeue=False)]
