"""Clock arithmetic: how much SLA time lies between two instants, and when a given amount of
it will have passed. Around the clock by default; with ``WorkingHours`` only the working
windows count (days of the week and hours of the day in a time zone, via ``zoneinfo``).

Pure functions over aware datetimes, no database. All arithmetic is done in UTC: Python
subtracts two datetimes of the same ``ZoneInfo`` by wall time, which is wrong across a
daylight-saving change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class WorkingHours:
    """Working windows: ``start``-``end`` local time on ``days`` (0 = Monday) in ``zone``.

    A window does not cross midnight (``start < end``). On a daylight-saving day the window
    keeps its local start and end times, so it is an hour longer or shorter in real time.
    """

    days: frozenset[int]
    start: time
    end: time
    zone: ZoneInfo

    def _window(self, day: date) -> tuple[datetime, datetime]:
        begin = datetime.combine(day, self.start, tzinfo=self.zone).astimezone(UTC)
        end = datetime.combine(day, self.end, tzinfo=self.zone).astimezone(UTC)
        return begin, end

    def windows(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The working windows (in UTC) from the local day of ``since`` on, without end."""
        day = since.astimezone(self.zone).date() - ONE_DAY  # a window may start the day before
        while True:
            if day.weekday() in self.days:
                begin, end = self._window(day)
                if end > begin:
                    yield begin, end
            day += ONE_DAY


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("SLA clock arithmetic needs aware datetimes")
    return moment.astimezone(UTC)


def clock_seconds(hours: WorkingHours | None, start: datetime, end: datetime) -> float:
    """SLA seconds between ``start`` and ``end`` (0 when ``end`` is not after ``start``)."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        return 0.0
    if hours is None:
        return (end - start).total_seconds()
    total = 0.0
    for begin, finish in hours.windows(start):
        if begin >= end:
            break
        overlap = (min(finish, end) - max(begin, start)).total_seconds()
        if overlap > 0:
            total += overlap
    return total


def clock_add(hours: WorkingHours | None, start: datetime, seconds: float) -> datetime:
    """The instant at which ``seconds`` of SLA time will have passed since ``start``.

    With working hours, time outside the windows does not count: an amount that runs out
    exactly at a window's end lands on that end, not on the next window's start.
    """
    start = _utc(start)
    if seconds <= 0:
        return start
    if hours is None:
        return start + timedelta(seconds=seconds)
    remaining = seconds
    for begin, finish in hours.windows(start):
        begin = max(begin, start)
        if finish <= begin:
            continue
        available = (finish - begin).total_seconds()
        if remaining <= available:
            return begin + timedelta(seconds=remaining)
        remaining -= available
    raise AssertionError("unreachable: windows() never ends")  # pragma: no cover
