"""The soak's verdict (bench/soak.py): what counts as growth."""

from bench.soak import Sample, grows, judge


def test_monotonic_rise_beyond_the_tolerance_is_growth() -> None:
    assert grows([10, 12, 14, 16], tolerance=2)  # a leak: up at every sample
    assert not grows([27, 28, 28, 28], tolerance=2)  # flat within the tolerance
    assert not grows([10, 15, 12, 16, 17, 19], tolerance=2)  # noise: it fell once
    assert not grows([10, 20], tolerance=2)  # two points are no trend


def test_pools_filling_up_during_the_warm_up_are_not_growth() -> None:
    fds = [24, 25, 27, 28, 28, 28]  # measured: SQLite connections 4 -> 5, one more socket
    samples = [Sample(seconds=30.0 * i, calls_ok=60 * i, calls_failed=0, rss_kb=90_000,
                      rss_anon_kb=40_000, fds=n, tasks=7) for i, n in enumerate(fds, 1)]
    assert not judge(samples).grew["fds"]
    samples[-1].fds = 31
    assert judge(samples).grew["fds"]


def test_verdict_flags_the_growing_series_and_failed_calls() -> None:
    def sample(i: int, *, tasks: int, failed: int = 0) -> Sample:
        return Sample(seconds=30.0 * i, calls_ok=100 * i, calls_failed=failed, rss_kb=90_000,
                      rss_anon_kb=40_000, fds=24, tasks=tasks)

    flat = judge([sample(i, tasks=7) for i in range(1, 5)])
    assert flat.ok and not any(flat.grew.values())
    leaking = judge([sample(i, tasks=7 + 2 * i) for i in range(1, 5)])
    assert leaking.grew == {"rss_anon_kb": False, "fds": False, "tasks": True} and not leaking.ok
    failing = judge([sample(1, tasks=7), sample(2, tasks=7, failed=50)])
    assert failing.failed_share > 0.02 and not failing.ok
