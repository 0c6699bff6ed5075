from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.core.digits import CollectorSpec, DigitCollector, Outcome

digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=19)


def feed_all(collector: DigitCollector, keys: str, start: float = 0.0, step: float = 0.2):
    results = []
    for i, key in enumerate(keys):
        results.append(collector.feed(key, start + i * step))
    return results


@given(digit_strings)
def test_hash_submits_exactly_the_digits_typed(digits: str) -> None:
    collector = DigitCollector(CollectorSpec(max_digits=19))
    results = feed_all(collector, digits + "#")
    assert results[-1].outcome is Outcome.COMPLETE
    assert results[-1].digits.reveal() == digits
    assert all(r.outcome is Outcome.PROGRESS for r in results[:-1])


@given(digit_strings, digit_strings)
def test_star_discards_everything_typed_before_it(first: str, second: str) -> None:
    collector = DigitCollector(CollectorSpec(max_digits=19))
    feed_all(collector, first + "*" + second + "#")
    # the collector is done; its result was the second entry only
    collector2 = DigitCollector(CollectorSpec(max_digits=19))
    results = feed_all(collector2, first + "*" + second + "#")
    assert results[-1].digits.reveal() == second


@given(st.lists(st.sampled_from("0123456789*#ABCD"), max_size=60))
def test_any_key_sequence_never_crashes_and_counts_stay_bounded(keys: list[str]) -> None:
    collector = DigitCollector(CollectorSpec(max_digits=8))
    for i, key in enumerate(keys):
        result = collector.feed(key, i * 0.2)
        assert 0 <= result.count <= 9
    assert collector.expire().outcome in (Outcome.COMPLETE, Outcome.TIMEOUT, Outcome.IGNORED)


def test_duplicate_dtmf_end_within_window_counts_once() -> None:
    collector = DigitCollector(CollectorSpec())
    assert collector.feed("5", 1.000).outcome is Outcome.PROGRESS
    assert collector.feed("5", 1.010).outcome is Outcome.IGNORED
    assert collector.feed("5", 1.300).outcome is Outcome.PROGRESS
    assert collector.count == 2


def test_repeated_digit_typed_twice_is_kept() -> None:
    collector = DigitCollector(CollectorSpec())
    feed_all(collector, "11", step=0.15)
    assert collector.count == 2


def test_first_digit_timeout_then_inter_digit_timeout() -> None:
    spec = CollectorSpec(first_digit_timeout=10, inter_digit_timeout=3)
    collector = DigitCollector(spec)
    assert collector.timeout == 10
    collector.feed("1", 0.0)
    assert collector.timeout == 3


def test_timeout_with_enough_digits_submits_them() -> None:
    collector = DigitCollector(CollectorSpec(min_digits=2))
    feed_all(collector, "12")
    result = collector.expire()
    assert result.outcome is Outcome.COMPLETE and result.digits.reveal() == "12"


def test_timeout_without_enough_digits_is_a_timeout() -> None:
    collector = DigitCollector(CollectorSpec(min_digits=4))
    feed_all(collector, "12")
    assert collector.expire().outcome is Outcome.TIMEOUT


def test_auto_complete_at_fixed_length() -> None:
    collector = DigitCollector(CollectorSpec(max_digits=4, auto_complete=True))
    results = feed_all(collector, "1225")
    assert results[-1].outcome is Outcome.COMPLETE and results[-1].digits.reveal() == "1225"


def test_one_digit_too_many_completes_for_validation() -> None:
    collector = DigitCollector(CollectorSpec(max_digits=3))
    results = feed_all(collector, "1234")
    assert results[-1].outcome is Outcome.COMPLETE and len(results[-1].digits) == 4


def test_special_key_is_reported_not_collected() -> None:
    collector = DigitCollector(CollectorSpec(special_keys=frozenset("*"), restart_key=None))
    feed_all(collector, "12")
    result = collector.feed("*", 5.0)
    assert result.outcome is Outcome.SPECIAL and result.key == "*" and collector.count == 2


def test_repr_and_results_never_show_digits() -> None:
    collector = DigitCollector(CollectorSpec())
    results = feed_all(collector, "4111#")
    assert "4111" not in repr(collector)
    assert "4111" not in repr(results[-1])


def test_wipe_overwrites_buffer() -> None:
    collector = DigitCollector(CollectorSpec())
    feed_all(collector, "987")
    collector.wipe()
    assert collector.count == 0
