"""Per-organization notification preferences and the pure decision of where and when an alert goes.

No I/O and no clock: ``decide`` takes ``now`` so the rules are tested exhaustively and replayed
identically. The rules:

* The inbox always gets every alert at once: it is the record, and it disturbs no one.
* Webhooks get every alert at once, one by one: they are machines, so neither quiet hours nor
  digests apply (a receiver that wants batching can batch).
* E-mail is what reaches a person, so it is what preferences shape:
  - In ``digest`` mode, ``match_proposed`` alerts are batched into the organization's next digest,
    unless their score reaches ``immediate_score_threshold`` (brokers hear about strong matches at
    once). Other kinds (an introduction, a decision, a reminder) are never digested: each calls for
    its own action.
  - Digest windows are ``digest_minutes`` long and aligned to the local ``digest_time`` (daily
    at 08:00 by default; hourly windows fall on the hour), so every alert of one window gets the
    same ``deliver_at`` and the caller can group by (organization, deliver_at).
  - Nothing is e-mailed during quiet hours (local time, ``[start, end)``, may wrap midnight): the
    e-mail is deferred to the end of the quiet period.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, Strict, WithJsonSchema, field_validator, model_validator

Channel = Literal["inbox", "webhook", "email"]
CHANNEL_ORDER: tuple[Channel, ...] = ("inbox", "webhook", "email")
#: Channels delivered as soon as the alert exists, whatever the preferences.
IMMEDIATE_CHANNELS: frozenset[str] = frozenset({"inbox", "webhook"})
#: Kinds that may wait for a digest; everything else is sent on its own.
DIGESTIBLE_KINDS: frozenset[str] = frozenset({"match_proposed"})


#: A local wall-clock time, "HH:MM" or "HH:MM:SS". Documented by pattern rather than JSON Schema's
#: format "time", which requires a UTC offset these local times must not have.
LocalTime = Annotated[time, WithJsonSchema({"type": "string", "pattern": r"^[0-2][0-9]:[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?$",
                                            "examples": ["08:00", "22:30:00"]})]


class QuietHours(BaseModel):
    """Local wall-clock window ``[start, end)``; ``start > end`` wraps midnight (22:00–07:00)."""

    model_config = ConfigDict(frozen=True)

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local times: give them without a timezone")
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ (omit quiet_hours for none)")
        return self

    def contains(self, local: time) -> bool:
        local = local.replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class Preferences(BaseModel):
    """What an organization wants. Defaults: inbox only, immediate, English, UTC, no quiet hours.

    ``language`` is a preference ("fr", "es-AR"); rendering falls back to English when there is no
    catalogue for it.
    """

    model_config = ConfigDict(frozen=True)

    channels: list[Channel] = Field(default_factory=lambda: list[Channel](["inbox"]))
    mode: Literal["immediate", "digest"] = "immediate"
    immediate_score_threshold: Annotated[float, Strict()] | None = Field(
        0.8, ge=0.0, le=1.0, description="In digest mode, proposals scoring at least this go out at once; None: never."
    )
    digest_minutes: Annotated[int, Strict()] = Field(1440, ge=15, le=1440, description="Length of a digest window (1440: daily).")
    digest_time: LocalTime = Field(time(8, 0), description="Local time windows are aligned to; a daily digest goes out then.")
    quiet_hours: QuietHours | None = None
    timezone: str = "UTC"
    # None: the organization's own language (from the catalog), English if it has none
    language: str | None = Field(None, min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")

    @field_validator("channels")
    @classmethod
    def _inbox_always(cls, value: list[Channel]) -> list[Channel]:
        chosen = set(value) | {"inbox"}
        return [c for c in CHANNEL_ORDER if c in chosen]

    @field_validator("digest_time")
    @classmethod
    def _local_digest_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("digest_time is a local time: give it without a UTC offset (the timezone field says which)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @field_validator("language")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().replace("_", "-").lower() if value is not None else None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Decision(BaseModel):
    """Where an alert goes and when.

    ``channels``: every channel that gets it. ``immediate_channels``: those to deliver now.
    The others (only ever ``email``) go out at ``deliver_at`` (UTC), on their own or, when
    ``digest``, as part of the organization's digest for that slot. ``deliver_at`` equals ``now``
    when nothing is deferred.
    """

    model_config = ConfigDict(frozen=True)

    channels: list[Channel]
    deliver_at: datetime
    digest: bool
    immediate_channels: list[Channel]

    @property
    def deferred_channels(self) -> list[Channel]:
        return [c for c in self.channels if c not in self.immediate_channels]


def _anchor(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at.replace(tzinfo=None), tzinfo=zone).astimezone(UTC)


def next_digest_slot(prefs: Preferences, now: datetime) -> datetime:
    """End of the digest window containing ``now`` (UTC), strictly after ``now``.

    Windows start at the local ``digest_time`` each day and follow each other every
    ``digest_minutes``; the last one of a day is cut short at the next day's ``digest_time``.
    """
    zone = prefs.zone
    now_utc = now.astimezone(UTC)
    day = now_utc.astimezone(zone).date()
    base = _anchor(day, prefs.digest_time, zone)
    if base > now_utc:
        day -= timedelta(days=1)
        base = _anchor(day, prefs.digest_time, zone)
    next_base = _anchor(day + timedelta(days=1), prefs.digest_time, zone)
    # Real elapsed time (in UTC): wall-clock arithmetic would be an hour off on DST days.
    period = timedelta(minutes=prefs.digest_minutes)
    slot = base + (math.floor((now_utc - base) / period) + 1) * period
    return min(slot, next_base)


def after_quiet_hours(prefs: Preferences, at: datetime) -> datetime:
    """``at`` (UTC) if it is outside quiet hours, else the end of the quiet period (UTC)."""
    quiet = prefs.quiet_hours
    if quiet is None:
        return at.astimezone(UTC)
    zone = prefs.zone
    local = at.astimezone(zone)
    if not quiet.contains(local.time()):
        return at.astimezone(UTC)
    end_day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        end_day += timedelta(days=1)  # wrapped window: it ends tomorrow morning
    end = datetime.combine(end_day, quiet.end, tzinfo=zone).astimezone(UTC)
    # A quiet end inside a DST gap maps to a real instant that is still after `at`; keep the
    # guarantee explicit anyway.
    return max(end, at.astimezone(UTC))


def decide(prefs: Preferences, kind: str, score: float | None, now: datetime) -> Decision:
    """Channels and timing for one alert of ``kind`` (``score`` for proposals) at ``now`` (aware)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now_utc = now.astimezone(UTC)
    channels = list(prefs.channels)
    immediate = [c for c in channels if c in IMMEDIATE_CHANNELS]
    if "email" not in channels:
        return Decision(channels=channels, deliver_at=now_utc, digest=False, immediate_channels=immediate)

    digest = (
        prefs.mode == "digest"
        and kind in DIGESTIBLE_KINDS
        and not (
            prefs.immediate_score_threshold is not None
            and score is not None
            and score >= prefs.immediate_score_threshold
        )
    )
    at = next_digest_slot(prefs, now_utc) if digest else now_utc
    at = after_quiet_hours(prefs, at)
    if at == now_utc:
        immediate = [c for c in channels if c in IMMEDIATE_CHANNELS or c == "email"]
    return Decision(channels=channels, deliver_at=at, digest=digest, immediate_channels=immediate)
