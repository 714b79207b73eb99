"""One duration grammar: what a delay accepts, an SLA config accepts, and the reverse."""

from __future__ import annotations

from datetime import timedelta

import pytest

from automation.actions import StepFailed
from automation.actions.delay import duration_of
from config.durations import DurationInvalid, parse_duration
from tasks_inbox.sla.rules import duration_value

EQUAL = [
    ("PT90M", timedelta(minutes=90)),
    ("P1DT2H", timedelta(days=1, hours=2)),
    ("1:30:00", timedelta(minutes=90)),
    ("90m", timedelta(minutes=90)),
    ("1w", timedelta(weeks=1)),
    ("2 weeks", timedelta(weeks=2)),
    ("1h 30m", timedelta(minutes=90)),
    ("1.5 hours", timedelta(minutes=90)),
    ("2 days", timedelta(days=2)),
    (" 45 Seconds ", timedelta(seconds=45)),
    (90, timedelta(seconds=90)),
    (1.5, timedelta(seconds=1.5)),
]


@pytest.mark.parametrize(("text", "expected"), EQUAL)
def test_delays_and_slas_read_the_same_durations(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert duration_of(text) == expected
    assert duration_value(text) == expected


@pytest.mark.parametrize("text", ["2 fortnights", "soon", "", "1x", True, None, [], "P", "1h 3"])
def test_what_neither_accepts(text: object) -> None:
    with pytest.raises(DurationInvalid):
        parse_duration(text)
    with pytest.raises(StepFailed) as failed:
        duration_of(text)
    assert failed.value.code == "INVALID_DURATION"
    assert duration_value(text) is None


def test_an_unknown_unit_is_named() -> None:
    with pytest.raises(DurationInvalid, match="unknown unit 'fortnights'"):
        parse_duration("2 fortnights")


def test_overflow_is_an_invalid_duration_not_a_crash() -> None:
    with pytest.raises(DurationInvalid):
        parse_duration(10**20)
    with pytest.raises(DurationInvalid):
        parse_duration("99999999999999 weeks")
