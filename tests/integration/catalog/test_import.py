"""Bulk import: POST /v1/imports (CSV and XLSX upload) and `ssmatch import` / `ssmatch replay`."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pymongo import MongoClient

from services.catalog import cli
from services.catalog.app import create_app
from ssmatch.stack.processes import free_port
from tests.integration.catalog.conftest import Api

pytestmark = pytest.mark.integration

HEADER = "title,description,sdgs,sectors,modalities,languages,urgency,budget.amount,time_window.start,cost_sharing\n"
GOOD = [
    '"Seed systems for smallholders","Drought-tolerant seed multiplication.","2;13","agriculture;food_security","capacity_development","en;fr",high,25000,2027-01-01,yes\n',
    '"Réseau d\'eau potable","Appui technique pour le réseau de Niamey.",6,water_sanitation,policy_advice,fr,,,,\n',
    '"School feeding design","Help to design a home-grown school feeding programme.",2;4,food_security,capacity_development,en,low,,,no\n',
]
BAD = [
    '"Bad sdg","Description.",2;19,agriculture,capacity_development,en,,,,\n',  # row 5: sdgs
    '"Bad codes","Description.",2,agri,capacity_development,en,,abc,,\n',  # row 6: sectors, budget.amount
]
CSV = (HEADER + "".join(GOOD) + "".join(BAD)).encode()


def upload(api: Api, headers: dict[str, str], data: bytes, name: str = "needs.csv", kind: str = "needs", dry_run: bool = False) -> Any:
    return api.client.post(
        "/v1/imports", params={"kind": kind, "dry_run": str(dry_run).lower()}, files={"file": (name, data, "application/octet-stream")}, headers=headers
    )


async def test_upload_validates_every_row_and_creates_nothing_twice(api: Api) -> None:
    office_id, office = await api.org()
    dry = await upload(api, office, CSV, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert {k: dry.json()[k] for k in ("rows", "valid", "created", "failed")} == {"rows": 5, "valid": 3, "created": 0, "failed": 2}
    listed = (await api.client.get("/v1/needs", params={"organization_id": office_id}, headers=office)).json()["items"]
    assert listed == []

    first = (await upload(api, office, CSV)).json()
    assert (first["created"], first["existing"], first["failed"]) == (3, 0, 2)
    assert {(e["row"], e["column"]) for e in first["errors"]} == {(5, "sdgs"), (6, "sectors"), (6, "budget.amount")}
    items = (await api.client.get("/v1/needs", params={"organization_id": office_id}, headers=office)).json()["items"]
    assert len(items) == 3
    seed = next(i for i in items if i["title"].startswith("Seed"))
    assert seed["sdgs"] == [2, 13] and seed["languages"] == ["en", "fr"] and seed["budget"]["amount"] == 25000
    assert seed["urgency"] == "high" and seed["cost_sharing"] is True and seed["time_window"]["start"] == "2027-01-01"
    assert seed["country"] == "MWI"  # the organization's default, as with POST /v1/needs

    again = (await upload(api, office, CSV)).json()
    assert (again["created"], again["existing"], again["failed"]) == (0, 3, 2)
    assert len((await api.client.get("/v1/needs", params={"organization_id": office_id}, headers=office)).json()["items"]) == 3
    # the outbox holds one published event per created item, not per upload
    assert await api.app.state.store.outbox.count_documents({"event.type": "need.published"}) == 3


async def test_xlsx_upload_and_file_level_errors(api: Api) -> None:
    from openpyxl import Workbook

    _, provider = await api.org("solution_provider", "BRA")
    book = Workbook()
    sheet = book.active
    sheet.append(["title", "description", "sdgs", "sectors", "modalities", "languages", "capacity", "delivery_countries"])
    sheet.append(["Solar irrigation training", "Ten years of field schools.", 2, "agriculture;energy", "knowledge_exchange", "pt;en", 40, "MWI;MOZ"])
    sheet.append(["Bad row", "x", "2", "agriculture", "peer_learning", "pt", "many", ""])
    buf = io.BytesIO()
    book.save(buf)
    r = await upload(api, provider, buf.getvalue(), name="offers.xlsx", kind="offers")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["created"], body["failed"]) == (1, 1) and body["errors"] == [{"row": 3, "column": "capacity", "reason": body["errors"][0]["reason"]}]
    offers = (await api.client.get("/v1/offers", headers=provider)).json()["items"]
    assert offers[0]["capacity"] == 40 and offers[0]["delivery_countries"] == ["MWI", "MOZ"] and offers[0]["sdgs"] == [2]

    unknown = (await upload(api, provider, b"title,colour\nA title,blue\n", kind="offers")).json()
    assert unknown["created"] == 0 and unknown["errors"] == [{"row": 1, "column": "colour", "reason": unknown["errors"][0]["reason"]}]
    empty = await upload(api, provider, b"", kind="offers")
    assert empty.status_code == 422 and empty.json()["error"]["details"][0]["path"] == "$.file"
    binary = await upload(api, provider, b"\x89PNG\r\n\x1a\n\x00\x00", name="logo.png", kind="offers")
    assert binary.status_code == 415
    wrong_kind = await upload(api, provider, CSV, kind="needs")
    assert wrong_kind.status_code == 403


@contextmanager
def serve(settings: Any) -> Iterator[str]:
    """The catalog over real HTTP (uvicorn in a thread), for the command line to talk to."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, start_background=False), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "catalog did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        with MongoClient(settings.mongodb_uri) as client:
            client.drop_database(settings.catalog_db)


def test_cli_import_is_resumable_waits_on_429_and_reports_rows(make_settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(admin_token="cli-admin", rate_limit_per_minute=600, rate_limit_burst=2)
    with serve(settings) as url:
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer cli-admin"}) as http:
            org = http.post("/v1/organizations", json={"name": "CLI office", "type": "country_office", "country": "SEN"}).json()
            token = http.post("/v1/tokens", json={"organization_id": org["id"]}).json()["token"]
        path = tmp_path / "needs.csv"
        path.write_bytes(CSV)
        report = tmp_path / "errors.csv"

        assert cli.main(["import", "needs", str(path), "--dry-run"]) == 1  # no token needed, nothing sent
        out = capsys.readouterr().out
        assert "rows=5 valid=3 failed=2" in out and "5\tsdgs\t" in out

        # the real import, then the same file again (as after a crash half-way): nothing is created twice
        assert cli.main(["import", "needs", str(path), "--token", token, "--catalog-url", url, "--report", str(report), "--quiet"]) == 1
        out = capsys.readouterr().out
        assert "created=3 existing=0 failed=2" in out  # burst of 2: the third row waited for Retry-After
        assert report.read_text().splitlines()[0] == "row,column,reason" and len(report.read_text().splitlines()) == 4
        assert cli.main(["import", "needs", str(path), "--token", token, "--catalog-url", url, "--quiet"]) == 1
        assert "created=0 existing=3 failed=2" in capsys.readouterr().out

        with httpx.Client(base_url=url, headers={"Authorization": "Bearer cli-admin"}) as http:
            assert len(http.get("/v1/needs", params={"organization_id": org["id"]}).json()["items"]) == 3
        assert cli.main(["import", "needs", str(path), "--token", "ssm_wrong", "--catalog-url", url, "--quiet"]) == 2
        assert cli.main(["import", "needs", str(tmp_path / "missing.csv"), "--dry-run"]) == 2
        assert cli.main(["import", "needs", str(path)]) == 2  # no token, not a dry run

        # replay: every open item queued again in the outbox, for the running catalog's relay to publish
        monkeypatch.setenv("MONGODB_URI", settings.mongodb_uri)
        monkeypatch.setenv("SSMATCH_CATALOG_DB", settings.catalog_db)
        with MongoClient(settings.mongodb_uri) as client:
            before = client[settings.catalog_db].outbox.count_documents({})
            assert cli.main(["replay"]) == 0
            assert "queued=3" in capsys.readouterr().out
            assert client[settings.catalog_db].outbox.count_documents({}) == before + 3
