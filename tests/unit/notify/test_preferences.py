"""Preferences and the pure where/when decision."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from pydantic import ValidationError

from services.notify.preferences import (
    Decision,
    Preferences,
    QuietHours,
    after_quiet_hours,
    decide,
    next_digest_slot,
)

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
ALL = ["inbox", "webhook", "email"]


def test_defaults_are_inbox_only_and_immediate() -> None:
    prefs = Preferences()
    assert prefs.channels == ["inbox"]
    assert prefs.mode == "immediate" and prefs.quiet_hours is None
    assert prefs.language is None and prefs.timezone == "UTC"  # None: the organization's own language
    d = decide(prefs, "match_proposed", 0.4, NOW)
    assert d == Decision(channels=["inbox"], deliver_at=NOW, digest=False, immediate_channels=["inbox"])


def test_inbox_is_always_on_and_channels_are_normalized() -> None:
    assert Preferences(channels=["email"]).channels == ["inbox", "email"]
    assert Preferences(channels=["email", "webhook", "email"]).channels == ["inbox", "webhook", "email"]
    assert Preferences(channels=[]).channels == ["inbox"]
    with pytest.raises(ValidationError):
        Preferences(channels=["sms"])


@pytest.mark.parametrize(
    "bad",
    [
        {"timezone": "Mars/Olympus_Mons"},
        {"immediate_score_threshold": 1.2},
        {"digest_minutes": 5},
        {"digest_minutes": 2000},
        {"mode": "weekly"},
        {"quiet_hours": {"start": "22:00", "end": "22:00"}},
    ],
)
def test_invalid_preferences_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Preferences(**bad)


def test_language_preference_is_normalized() -> None:
    assert Preferences(language="es_AR").language == "es-ar"


def test_immediate_mode_sends_everything_now() -> None:
    prefs = Preferences(channels=ALL)
    for kind, score in [("match_proposed", 0.1), ("match_approved", 0.9), ("expiry_reminder", None)]:
        d = decide(prefs, kind, score, NOW)
        assert d.channels == ALL and d.immediate_channels == ALL and d.deferred_channels == []
        assert d.deliver_at == NOW and not d.digest


def test_digest_mode_batches_weak_proposals_and_alerts_strong_ones_at_once() -> None:
    prefs = Preferences(channels=ALL, mode="digest", immediate_score_threshold=0.8, digest_minutes=60)
    weak = decide(prefs, "match_proposed", 0.79, NOW)
    assert weak.digest and weak.deliver_at == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    assert weak.immediate_channels == ["inbox", "webhook"] and weak.deferred_channels == ["email"]
    strong = decide(prefs, "match_proposed", 0.8, NOW)  # threshold is inclusive
    assert not strong.digest and strong.deliver_at == NOW and strong.immediate_channels == ALL


def test_threshold_none_digests_every_proposal() -> None:
    prefs = Preferences(channels=ALL, mode="digest", immediate_score_threshold=None)
    assert decide(prefs, "match_proposed", 1.0, NOW).digest
    assert decide(prefs, "match_proposed", None, NOW).digest


@pytest.mark.parametrize("kind", ["match_approved", "match_rejected", "match_lifecycle", "expiry_reminder", "digest"])
def test_only_proposals_are_digested(kind: str) -> None:
    d = decide(Preferences(channels=ALL, mode="digest"), kind, 0.1, NOW)
    assert not d.digest and d.deliver_at == NOW


def test_without_email_nothing_is_deferred_or_digested() -> None:
    prefs = Preferences(channels=["inbox", "webhook"], mode="digest",
                        quiet_hours=QuietHours(start=time(0, 0), end=time(23, 59)))
    d = decide(prefs, "match_proposed", 0.1, NOW)
    assert d == Decision(channels=["inbox", "webhook"], deliver_at=NOW, digest=False,
                         immediate_channels=["inbox", "webhook"])


def test_daily_digest_goes_out_at_the_local_digest_time() -> None:
    prefs = Preferences(channels=ALL, mode="digest", timezone="America/Bogota")  # UTC-5, no DST
    # 09:30 in Bogotá: past today's 08:00, so tomorrow 08:00 local = 13:00 UTC.
    assert decide(prefs, "match_proposed", 0.1, NOW).deliver_at == datetime(2026, 3, 11, 13, 0, tzinfo=UTC)
    # 07:59 in Bogotá: today's 08:00.
    early = datetime(2026, 3, 10, 12, 59, tzinfo=UTC)
    assert decide(prefs, "match_proposed", 0.1, early).deliver_at == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)


def test_alerts_of_one_window_share_their_slot() -> None:
    prefs = Preferences(channels=ALL, mode="digest", digest_minutes=240, timezone="Asia/Kolkata")  # UTC+5:30
    start = datetime(2026, 3, 10, 6, 30, tzinfo=UTC)  # 12:00 local, a window boundary (08:00 + 4h)
    slots = {next_digest_slot(prefs, start + timedelta(minutes=m)) for m in (0, 1, 60, 239)}
    assert slots == {datetime(2026, 3, 10, 10, 30, tzinfo=UTC)}  # 16:00 local
    assert next_digest_slot(prefs, start + timedelta(minutes=240)) == datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def test_last_window_of_the_day_is_cut_at_the_next_digest_time() -> None:
    prefs = Preferences(mode="digest", digest_minutes=420, timezone="UTC")  # 08:00, 15:00, 22:00, 05:00, 08:00
    assert next_digest_slot(prefs, datetime(2026, 3, 10, 23, 0, tzinfo=UTC)) == datetime(2026, 3, 11, 5, 0, tzinfo=UTC)
    assert next_digest_slot(prefs, datetime(2026, 3, 11, 5, 30, tzinfo=UTC)) == datetime(2026, 3, 11, 8, 0, tzinfo=UTC)


def test_digest_slots_follow_daylight_saving_time() -> None:
    prefs = Preferences(mode="digest", timezone="America/New_York")  # DST starts 2026-03-08
    before = next_digest_slot(prefs, datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    after = next_digest_slot(prefs, datetime(2026, 3, 8, 14, 0, tzinfo=UTC))
    assert before == datetime(2026, 3, 7, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert after == datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # 08:00 EDT


def test_quiet_hours_defer_email_to_the_end_of_the_night() -> None:
    prefs = Preferences(channels=ALL, timezone="Africa/Nairobi",  # UTC+3
                        quiet_hours=QuietHours(start=time(22, 0), end=time(7, 0)))
    late = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # 23:00 local
    d = decide(prefs, "match_approved", None, late)
    assert d.deliver_at == datetime(2026, 3, 11, 4, 0, tzinfo=UTC)  # 07:00 local next day
    assert d.immediate_channels == ["inbox", "webhook"] and d.deferred_channels == ["email"] and not d.digest
    small_hours = datetime(2026, 3, 11, 0, 30, tzinfo=UTC)  # 03:30 local, same night
    assert decide(prefs, "match_approved", None, small_hours).deliver_at == datetime(2026, 3, 11, 4, 0, tzinfo=UTC)
    awake = datetime(2026, 3, 11, 4, 0, tzinfo=UTC)  # 07:00 local exactly: the window is [start, end)
    assert decide(prefs, "match_approved", None, awake).deliver_at == awake
    evening = datetime(2026, 3, 10, 18, 59, tzinfo=UTC)  # 21:59 local
    assert decide(prefs, "match_approved", None, evening).immediate_channels == ALL


def test_daytime_quiet_hours_do_not_wrap() -> None:
    prefs = Preferences(channels=ALL, quiet_hours=QuietHours(start=time(12, 0), end=time(14, 0)))
    assert decide(prefs, "expiry_reminder", None, NOW).deliver_at == NOW  # 14:30 UTC
    lunch = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    assert decide(prefs, "expiry_reminder", None, lunch).deliver_at == datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def test_a_digest_slot_in_quiet_hours_waits_for_morning() -> None:
    prefs = Preferences(channels=ALL, mode="digest", digest_minutes=60, timezone="Africa/Dakar",  # UTC+0
                        quiet_hours=QuietHours(start=time(21, 0), end=time(6, 30)))
    d = decide(prefs, "match_proposed", 0.2, datetime(2026, 3, 10, 20, 15, tzinfo=UTC))
    assert d.digest and d.deliver_at == datetime(2026, 3, 11, 6, 30, tzinfo=UTC)


def test_quiet_hours_end_inside_a_dst_gap_is_still_in_the_future() -> None:
    # New York skips 02:00-03:00 on 2026-03-08.
    prefs = Preferences(channels=ALL, timezone="America/New_York",
                        quiet_hours=QuietHours(start=time(23, 0), end=time(2, 30)))
    at = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST
    out = after_quiet_hours(prefs, at)
    assert out > at and out - at <= timedelta(hours=2, minutes=30)


def test_now_must_be_aware_and_results_are_utc() -> None:
    with pytest.raises(ValueError):
        decide(Preferences(), "match_proposed", 0.5, datetime(2026, 3, 10, 14, 30))
    d = decide(Preferences(channels=ALL), "match_proposed", 0.5, NOW.astimezone(timezone(timedelta(hours=-3))))
    assert d.deliver_at == NOW and d.deliver_at.utcoffset() == timedelta(0)


def test_decide_is_pure() -> None:
    prefs = Preferences(channels=ALL, mode="digest")
    snapshot = prefs.model_dump()
    assert decide(prefs, "match_proposed", 0.3, NOW) == decide(prefs, "match_proposed", 0.3, NOW)
    assert prefs.model_dump() == snapshot
