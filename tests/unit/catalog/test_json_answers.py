"""The catalog's JSON answers are rendered in one pass (`api.common.ok`), byte for byte what the round
trip through `jsonable` and FastAPI's JSONResponse sent before."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from fastapi.responses import JSONResponse

from services.catalog.api.common import jsonable, ok

BODIES: list[Any] = [
    {"items": [{"id": str(ObjectId()), "title": "Sécurité alimentaire 建立移民统计数据库 تحلية", "score": 0.123456789, "sdgs": [2, 13],
                "created_at": datetime(2026, 11, 30, 12, 0, 1, 250000, tzinfo=UTC), "expires_at": None, "gender_responsive": True,
                "search": {"score": 1e-17, "reasons": ["matched words"], "matched_words": [], "similarity": None}}],
     "next_cursor": None, "search": {"words": "index", "meaning": "used", "message": None}},
    {"_id": ObjectId("656f0c2b9d1e8a3f4b2c1d0e"), "when": datetime(2026, 1, 2), "nested": {"1": (1, 2.5, "x")}, "big": 2**70, "quote": 'a "b" \\ c\n'},
    [],
    "plain",
]


@pytest.mark.parametrize("body", BODIES)
def test_a_json_answer_is_the_same_bytes_as_the_round_trip_sent(body: Any) -> None:
    sent = ok(body, 201, {"ETag": '"3"'})
    before = JSONResponse(jsonable(body), status_code=201, headers={"ETag": '"3"'})
    assert sent.body == before.body
    assert sent.status_code == 201 and sent.headers["etag"] == '"3"' and sent.headers["content-type"] == "application/json"
    assert sent.headers["content-length"] == str(len(before.body))


def test_a_value_json_cannot_carry_is_refused_as_before() -> None:
    for bad in ({"score": math.nan}, {"score": math.inf}):
        with pytest.raises(ValueError):
            JSONResponse(jsonable(bad))
        with pytest.raises(ValueError):
            ok(bad)
