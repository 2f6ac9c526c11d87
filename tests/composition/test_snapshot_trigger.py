"""When the service snapshots the engine (composition.service.snapshot_due)."""

from composition.service import snapshot_due
from composition.settings import parse_settings


def test_nothing_changed_means_no_snapshot_however_long_it_has_been() -> None:
    assert not snapshot_due(0, 3_600.0, interval=60.0, every_records=200_000)


def test_the_interval_snapshots_what_changed() -> None:
    assert not snapshot_due(5, 59.0, interval=60.0, every_records=200_000)
    assert snapshot_due(5, 60.0, interval=60.0, every_records=200_000)


def test_the_journal_growing_by_the_record_count_snapshots_before_the_interval() -> None:
    """A busy engine (20k bids/s) passes 100,000 records in 5 s: the restart's replay stays bounded."""
    assert not snapshot_due(99_999, 5.0, interval=60.0, every_records=100_000)
    assert snapshot_due(100_000, 5.0, interval=60.0, every_records=100_000)


def test_the_record_count_is_a_setting() -> None:
    assert parse_settings([], {}).snapshot_records == 100_000
    assert parse_settings([], {"SNAPSHOT_RECORDS": "50000"}).snapshot_records == 50_000
