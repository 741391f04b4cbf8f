import pytest

from bench.stats import even_offsets, percentile, rate, ratio, summarize


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([5.0], 50, 5.0),
    ([5.0], 99, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
    ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
    ([4.0, 1.0, 3.0, 2.0], 50, 2.5),
    ([float(n) for n in range(1, 101)], 99, 99.01),
    ([10.0, 20.0], 25, 12.5),
])
def test_percentile_interpolates_linearly_between_closest_ranks(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_refuses_an_empty_sample_and_a_bad_rank():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_gives_count_mean_median_p99_and_max():
    s = summarize([3.0, 1.0, 2.0, 10.0])
    assert (s.count, s.mean, s.p50, s.max) == (4, 4.0, 2.5, 10.0)
    assert s.p99 == pytest.approx(9.79)
    assert s.as_dict()["p50"] == 2.5


def test_summary_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        summarize([])


def test_rate_is_zero_for_no_events_or_no_time():
    assert rate(500, 2.0) == 250.0
    assert rate(0, 2.0) == 0.0
    assert rate(10, 0.0) == 0.0


def test_ratio_is_none_without_a_positive_whole():
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(1.0, 0.0) is None


def test_even_offsets_spread_events_at_the_given_rate():
    assert even_offsets(4, 100.0) == pytest.approx([0.0, 0.01, 0.02, 0.03])
    assert even_offsets(0, 100.0) == []
    with pytest.raises(ValueError):
        even_offsets(3, 0.0)


def test_a_censored_summary_is_a_lower_bound_when_anything_was_cut_off():
    from bench.stats import censored_summary
    exact = censored_summary([1.0, 2.0, 3.0], [])
    assert (exact["p50"], exact["lower_bound"], exact["censored"]) == (2.0, False, 0)
    cut = censored_summary([1.0, 2.0], [50.0, 60.0])
    assert cut["lower_bound"] and cut["count"] == 4 and cut["max"] == 60.0
    with pytest.raises(ValueError):
        censored_summary([], [])


def test_median_interpolates():
    from bench.stats import median
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
