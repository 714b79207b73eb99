"""Clock arithmetic (pure, no database): around the clock and in working hours, across
nights, weekends and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tasks_inbox.sla.calendar import WorkingHours, clock_add, clock_seconds

PARIS = ZoneInfo("Europe/Paris")
OFFICE = WorkingHours(days=frozenset(range(5)), start=time(9), end=time(17), zone=PARIS)


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def test_around_the_clock_is_plain_time() -> None:
    start = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)
    assert clock_seconds(None, start, start + timedelta(hours=30)) == 30 * 3600
    assert clock_add(None, start, 90) == start + timedelta(seconds=90)
    assert clock_seconds(None, start, start - timedelta(hours=1)) == 0


def test_nights_and_weekends_do_not_count() -> None:
    friday_16 = paris(2026, 3, 6, 16)
    monday_10 = paris(2026, 3, 9, 10)
    assert clock_seconds(OFFICE, friday_16, monday_10) == 2 * 3600
    assert clock_add(OFFICE, friday_16, 2 * 3600) == monday_10
    # started at night: counting begins at 09:00
    assert clock_add(OFFICE, paris(2026, 3, 3, 22), 3600) == paris(2026, 3, 4, 10)
    # a whole week is 40 hours
    assert clock_seconds(OFFICE, paris(2026, 3, 2, 0), paris(2026, 3, 9, 0)) == 40 * 3600


def test_an_amount_ending_at_closing_time_ends_there() -> None:
    assert clock_add(OFFICE, paris(2026, 3, 2, 9), 8 * 3600) == paris(2026, 3, 2, 17)
    assert clock_add(OFFICE, paris(2026, 3, 2, 9), 8 * 3600 + 1) == paris(2026, 3, 3, 9, 0, 1)


def test_daylight_saving_keeps_local_office_hours() -> None:
    # Paris moves to summer time on Sunday 29 March 2026; the office still opens at 09:00
    friday = paris(2026, 3, 27, 16)
    monday_9 = paris(2026, 3, 30, 9)
    assert clock_add(OFFICE, friday, 3600) == paris(2026, 3, 27, 17)
    assert clock_add(OFFICE, friday, 2 * 3600) == paris(2026, 3, 30, 10)
    assert monday_9.astimezone(UTC).hour == 7  # UTC+2 now
    around_the_clock = clock_seconds(None, friday, monday_9)
    assert around_the_clock == (65 - 1) * 3600  # one hour lost in the night of the change


def test_a_zone_east_of_utc_counts_its_own_monday() -> None:
    tokyo = WorkingHours(
        days=frozenset({0}), start=time(9), end=time(10), zone=ZoneInfo("Asia/Tokyo")
    )
    sunday_utc = datetime(2026, 3, 8, 23, 30, tzinfo=UTC)  # Monday 08:30 in Tokyo
    assert clock_add(tokyo, sunday_utc, 60) == datetime(2026, 3, 9, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize("seconds", [1, 59, 3600, 8 * 3600, 8 * 3600 + 5, 45 * 3600, 200_000])
def test_add_and_count_agree(seconds: int) -> None:
    start = paris(2026, 3, 4, 16, 17)
    end = clock_add(OFFICE, start, seconds)
    assert clock_seconds(OFFICE, start, end) == pytest.approx(seconds)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        clock_seconds(OFFICE, datetime(2026, 3, 2, 9), datetime(2026, 3, 2, 10))
