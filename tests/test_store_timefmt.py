"""h5stream's time forms are read the same way by Search, PathRecord and playback."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.store.timefmt import TimeFormatError, format_epoch, format_time, parse_offset, parse_time

pytestmark = pytest.mark.unit

PLUS8 = timezone(timedelta(hours=8))


@pytest.mark.parametrize("text", ["2018-03-07T120101+08", "2018-03-07T12:01:01+08:00", "20180307T120101+0800",
                                  "2018-03-07T04:01:01Z", "2018-03-07 12:01:01.250+08"])
def test_iso_forms(text: str) -> None:
    assert parse_time(text) == datetime(2018, 3, 7, 12, 1, 1, tzinfo=PLUS8)


def test_zone_default_and_format() -> None:
    assert parse_time("2018-03-07T1201", PLUS8) == datetime(2018, 3, 7, 12, 1, tzinfo=PLUS8)
    assert parse_offset("-05:30").utcoffset(None) == -timedelta(hours=5, minutes=30)
    assert format_time(datetime(2018, 3, 7, 12, 1, 1, tzinfo=PLUS8)) == "2018-03-07T120101+0800"


@pytest.mark.parametrize("text", ["", "yesterday", "2018-13-07T120101+08", "2018-02-30T120101", "2018-03-07T250101",
                                  "2018-03-07T120101+15", "2018-03-07T120101+08:60", "../2018"])
def test_bad_times_refused(text: str) -> None:
    with pytest.raises(TimeFormatError):
        parse_time(text)


@pytest.mark.parametrize("tz", ["+0800", "-0530", "+0000", "+1400"])
def test_format_epoch_matches_format_time(tz: str) -> None:
    zone = parse_offset(tz)
    for epoch in (0, 1520395261.7, 1798761599, 1798761600):
        assert format_epoch(epoch, tz) == format_time(datetime.fromtimestamp(int(epoch), zone))
