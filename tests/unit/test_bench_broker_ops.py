from bench import broker_ops
from bench.broker_ops import Ops
from tests.unit.test_bench_report import python_details

# What `rabbitmqctl eval EXPRESSION` prints: the line the expression writes, then its value.
OUTPUT = "zeitplan-ops 5114 7386 7380\nok\n"


class FakeNode:
    def __init__(self, name: str, answers: list[str | None]) -> None:
        self.name = name
        self.answers = answers
        self.asked: list[tuple[str, ...]] = []

    def ctl(self, *args: str, timeout: float = 30.0) -> str | None:
        self.asked.append(args)
        return self.answers.pop(0)


def test_the_counters_are_read_from_the_line_the_expression_prints():
    assert broker_ops.parse(OUTPUT) == Ops(published=5114, delivered=7386, acked=7380)
    assert broker_ops.parse("Error: unable to perform an operation on node") is None
    assert broker_ops.parse(None) is None


def test_the_expression_asks_for_publishes_and_the_quorum_queues_deliveries_and_acks():
    for counter in ("messages_received_total", "messages_delivered_total",
                    "messages_acknowledged_total", "rabbit_quorum_queue"):
        assert counter in broker_ops.EXPRESSION


def test_a_window_sums_what_every_node_did_between_its_two_readings():
    nodes = [FakeNode("rabbit1", ["zeitplan-ops 3 6 6\nok\n", "zeitplan-ops 13 26 25\nok\n"]),
             FakeNode("rabbit2", ["zeitplan-ops 0 0 0\nok\n", "zeitplan-ops 5 4 4\nok\n"]),
             FakeNode("rabbit3", [None, "zeitplan-ops 99 99 99\nok\n"])]  # down at first
    with broker_ops.OpsWindow(nodes) as window:
        pass
    figures = window.summary(runs=10)
    assert figures == {"nodes": 2, "runs": 10, "total": {"published": 15, "delivered": 24,
                                                          "acked": 23},
                       "per_run": {"published": 1.5, "delivered": 2.4, "acked": 2.3}}
    assert all(node.asked == [("eval", broker_ops.EXPRESSION)] * 2 for node in nodes)
    assert broker_ops.describe(figures) == (
        "1.50 publishes, 2.40 deliveries and 2.30 acks a run, over 2 node(s)")


def test_a_window_no_node_answered_has_no_figures():
    with broker_ops.OpsWindow([FakeNode("rabbit1", [None, None])]) as window:
        pass
    assert window.summary(runs=10) is None


def test_the_details_of_a_throughput_run_carry_the_brokers_operations(tmp_path):
    figures = broker_ops.summary({"rabbit1": Ops(0, 0, 0)}, {"rabbit1": Ops(2100, 2000, 2000)},
                                 runs=5000)
    assert python_details(tmp_path, broker_ops=figures).endswith(
        "RabbitMQ's counters: 0.42 publishes, 0.40 deliveries and 0.40 acks a run, "
        "over 1 node(s).")
