"""Workspace pages beyond items and matches: the inbox (from notify), the dashboard and the import."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from services.catalog import importer
from services.catalog.ui import charts, usecases
from services.catalog.ui.routes import (
    TAXONOMY,
    PageRoute,
    _csv_response,
    _notify,
    _unread,
    error_page,
    form_of,
    page_of,
    queue_filters_of,
    redirect,
    render,
    signed_in,
)
from ssmatch.http import ApiError

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=PageRoute)


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request) -> Response:
    page = await signed_in(request, "seeker", "provider", "broker")
    items: list[dict[str, Any]] | None
    try:
        r = await _notify(page, "GET", "/v1/notifications", params={"limit": 50})
        items = r.json().get("items", []) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        items = None
    await _unread(page, refresh=True)
    return render(page, "inbox.html", items=items)


@router.post("/inbox/{notification_id}/read")
async def mark_read(request: Request, notification_id: str) -> Response:
    try:
        page = await signed_in(request)
        await form_of(request, page)
        await _notify(page, "POST", f"/v1/notifications/{notification_id[:64]}/read")
    except httpx.HTTPError:
        pass
    return redirect(page, "/ui/inbox")


def report_filters(request: Request) -> dict[str, Any]:
    """The dashboard narrows its figures with the queue's filters (not its status or sort)."""
    filters, _ = queue_filters_of(dict(request.query_params))
    return {k: v for k, v in filters.items() if k not in ("status", "sort")}


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    page = await signed_in(request, "broker", "admin")
    filters = report_filters(request)
    summary = await usecases.reports_summary(page.catalog, page.caller, filters)  # type: ignore[arg-type]
    query = ("?" + request.url.query) if request.url.query else ""
    return render(page, "dashboard.html", summary=summary, charts={name: make(summary) for name, make in charts.CHARTS.items()},
                  filters=filters, taxonomy=TAXONOMY, query_string=query)


@router.get("/dashboard/{chart}.csv")
async def dashboard_csv(request: Request, chart: str) -> Response:
    if chart not in charts.CHARTS:
        return error_page(await page_of(request), ApiError(404, "no such chart"))
    page = await signed_in(request, "broker", "admin")
    summary = await usecases.reports_summary(page.catalog, page.caller, report_filters(request))  # type: ignore[arg-type]
    data = charts.CHARTS[chart](summary)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([chart, *data["series"]])
    for label, values in data["rows"]:
        writer.writerow([label, *["" if v is None else v for v in values]])
    return _csv_response(page, buf.getvalue(), f"{chart}.csv")


@router.get("/import", response_class=HTMLResponse)
async def import_form(request: Request) -> Response:
    page = await signed_in(request, "seeker", "provider")
    return render(page, "import.html", result=None)


@router.post("/import", response_class=HTMLResponse)
async def import_file(request: Request) -> Response:
    try:
        page = await signed_in(request, "seeker", "provider")
        form = await form_of(request, page)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) and not hasattr(upload, "read"):
            raise ApiError(422, page._("Choose a CSV or XLSX file."))
        data = await upload.read()  # type: ignore[union-attr]
        if len(data) > importer.MAX_FILE_BYTES:
            raise ApiError(413, page._("The file is too large."))
        kind = "need" if page.caller.role == "seeker" else "offer"  # type: ignore[union-attr]
        try:
            table = importer.read_table(data, getattr(upload, "filename", "") or "")
        except importer.ImportFileError as exc:
            raise ApiError(exc.status, str(exc)) from exc
        org = await usecases.org_of(page.catalog, page.caller)  # type: ignore[arg-type]
        result = await importer.import_rows(page.catalog.store, page.caller, org, kind, table, dry_run=form.get("dry_run") == "yes",
                                            request_hash=usecases.request_hash)
    except ApiError as exc:
        page = await page_of(request)
        fragment = request.headers.get("x-requested-with") == "fetch"
        return render(page, "import_result.html" if fragment else "import.html", status=exc.status, result=None, error=exc.message)
    fragment = request.headers.get("x-requested-with") == "fetch"
    return render(page, "import_result.html" if fragment else "import.html", result=result)
