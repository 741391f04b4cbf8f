import pytest

from bench import targets
from bench.targets import Target, judge, number


def test_a_minimum_target_is_met_at_the_limit_and_missed_below_it_by_the_difference():
    floor = Target("≥ 2,500 runs/s", 2500.0, True, "runs/s")
    assert judge(floor, 2500.0).met is True
    missed = judge(floor, 500.0)
    assert missed.met is False
    assert "2,000 runs/s" in missed.text and "0.20×" in missed.text


def test_a_maximum_target_is_missed_at_the_limit_and_met_below_it():
    ceiling = Target("p99 < 10 ms", 10.0, False, "ms")
    assert judge(ceiling, 10.0).met is False
    met = judge(ceiling, 4.0)
    assert met.met is True and "6.0 ms under" in met.text
    assert "by 30.0 ms" in judge(ceiling, 40.0).text


def test_a_lower_bound_only_decides_a_maximum_target_when_it_is_already_over():
    ceiling = Target("p99 < 1 s", 1000.0, False, "ms")
    assert judge(ceiling, 200.0, lower_bound=True).met is None
    over = judge(ceiling, 5000.0, lower_bound=True)
    assert over.met is False and "at least" in over.text


def test_a_missing_figure_is_not_judged():
    assert judge(targets.E2E_RATIO, None).met is None


def test_the_sigkill_target_is_the_session_timeout_plus_one_second():
    target = targets.failover_kill(6.0)
    assert target.limit == 7.0
    assert judge(target, 6.9).met is True
    assert judge(target, 7.3).met is False


@pytest.mark.parametrize(("value", "unit", "text"), [
    (12953.4, "msg/s", "12,953 msg/s"),
    (39.04, "ms", "39.0 ms"),
    (4.0, "ms", "4.0 ms"),
    (0.442, "s", "0.44 s"),
    (1.5, "x", "1.50×"),
])
def test_numbers_are_printed_with_a_precision_that_fits_their_size(value, unit, text):
    assert number(value, unit) == text


def test_zeitplan_must_be_strictly_lower_than_the_peer():
    assert targets.lower_is_better("Celery's", 5.0, 28.0).met is True
    assert targets.lower_is_better("Celery's", 28.0, 28.0).met is False
