"""Webhook signing and verification, body encoding and the backoff schedule (pure)."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime

import pytest

from services.notify.channels.webhook import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    encode_body,
    sign_payload,
    signature_headers,
    verify_signature,
)

SECRET = "whsec_test_7d1c"
TS = 1_700_000_000
BODY = b'{"kind":"match_proposed","score":0.82}'


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_payload(SECRET, TS, BODY) == expected
    # Pinned: receivers depend on the scheme, so changing it must break this test.
    assert expected == "9599b37e2e0093eb633161ae4fb1a09ca6931a16baee98ec0b14642e56b59291"


def test_headers_carry_timestamp_versioned_signature_and_delivery_id() -> None:
    headers = signature_headers(SECRET, TS, BODY, "dlv-1")
    assert headers[TIMESTAMP_HEADER] == str(TS)
    assert headers[SIGNATURE_HEADER] == f"v1={sign_payload(SECRET, TS, BODY)}"
    assert headers[DELIVERY_ID_HEADER] == "dlv-1"
    assert TIMESTAMP_HEADER == "X-SSMatch-Timestamp"
    assert SIGNATURE_HEADER == "X-SSMatch-Signature"
    assert DELIVERY_ID_HEADER == "X-SSMatch-Delivery-Id"


def _valid_header() -> str:
    return f"v1={sign_payload(SECRET, TS, BODY)}"


def test_verify_accepts_a_fresh_valid_signature() -> None:
    assert verify_signature(SECRET, str(TS), _valid_header(), BODY, now=TS + 10)


@pytest.mark.parametrize(
    ("secret", "ts_header", "body"),
    [
        ("other-secret", str(TS), BODY),  # wrong secret
        (SECRET, str(TS), BODY + b" "),  # body changed by one byte
        (SECRET, str(TS + 1), BODY),  # timestamp changed (replay with a new timestamp)
    ],
)
def test_verify_rejects_tampering(secret: str, ts_header: str, body: bytes) -> None:
    assert not verify_signature(secret, ts_header, _valid_header(), body, now=TS)


def test_verify_enforces_tolerance_both_ways() -> None:
    header = _valid_header()
    assert verify_signature(SECRET, str(TS), header, BODY, tolerance_s=300, now=TS + 300)
    assert verify_signature(SECRET, str(TS), header, BODY, tolerance_s=300, now=TS - 300)
    assert not verify_signature(SECRET, str(TS), header, BODY, tolerance_s=300, now=TS + 301)  # stale
    assert not verify_signature(SECRET, str(TS), header, BODY, tolerance_s=300, now=TS - 301)  # from the future


def test_verify_uses_the_clock_by_default() -> None:
    now = int(datetime.now(UTC).timestamp())
    assert verify_signature(SECRET, str(now), f"v1={sign_payload(SECRET, now, BODY)}", BODY)
    assert not verify_signature(SECRET, str(TS), _valid_header(), BODY)  # 2023 is long stale


@pytest.mark.parametrize(
    ("ts_header", "sig_header"),
    [
        (None, "v1=abc"),
        (str(TS), None),
        ("", "v1=abc"),
        ("not-a-number", "v1=abc"),
        ("1.5e9", "v1=abc"),
        (str(TS), ""),
        (str(TS), "abc"),  # no scheme
        (str(TS), "v0=" + "0" * 64),  # unknown scheme only
        (str(TS), "v1=" + "é" * 64),  # non-ASCII must not crash the compare
        (str(TS), "v1=" + "0" * 64),
    ],
)
def test_verify_rejects_malformed_headers(ts_header: str | None, sig_header: str | None) -> None:
    assert not verify_signature(SECRET, ts_header, sig_header, BODY, now=TS)


def test_verify_accepts_any_listed_v1_signature_for_rotation() -> None:
    good = sign_payload(SECRET, TS, BODY)
    old = sign_payload("old-secret", TS, BODY)
    assert verify_signature(SECRET, str(TS), f"v0=zz, v1={old}, v1={good}", BODY, now=TS)
    assert verify_signature("old-secret", str(TS), f"v1={old},v1={good}", BODY, now=TS)


def test_body_encoding_is_stable_compact_utf8() -> None:
    payload = {"b": "Coopération Sud-Sud", "a": 1, "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    body = encode_body(payload)
    assert body == encode_body(dict(reversed(list(payload.items()))))  # key order does not matter
    assert body.decode("utf-8") == '{"a":1,"at":"2026-01-02T03:04:05+00:00","b":"Coopération Sud-Sud"}'
    with pytest.raises(TypeError):
        encode_body({"x": object()})


async def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    async with WebhookSender(backoff_base_s=1.0, backoff_max_s=8.0, rng=random.Random(7)) as sender:
        for failed in range(1, 8):
            ceiling = min(8.0, 2 ** (failed - 1))
            samples = [sender.backoff_delay(failed) for _ in range(200)]
            assert all(0 <= s <= ceiling for s in samples)
            assert max(samples) > ceiling * 0.8  # spread over the whole range ("full" jitter)
            assert min(samples) < ceiling * 0.2
        # Retry-After lifts the delay, but never beyond the cap.
        assert sender.backoff_delay(1, retry_after_s=5) >= 5
        assert sender.backoff_delay(1, retry_after_s=500) <= 8.0


async def test_backoff_is_deterministic_with_a_seeded_rng() -> None:
    async with WebhookSender(rng=random.Random(1)) as a, WebhookSender(rng=random.Random(1)) as b:
        assert [a.backoff_delay(n) for n in range(1, 6)] == [b.backoff_delay(n) for n in range(1, 6)]


def test_sender_rejects_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        WebhookSender(max_attempts=0)
    with pytest.raises(ValueError):
        WebhookSender(timeout_s=0)
