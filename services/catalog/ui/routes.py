"""The web workspace: server-rendered pages over the catalog's use cases (never HTTP, never Mongo).

Every page works without JavaScript; the small script only adds keyboard shortcuts, select-all and the
import progress bar. Forms post back here with a CSRF token and answer with a 303 redirect.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from services.catalog.service import Catalog
from services.catalog.ui import i18n, labels, usecases
from services.catalog.ui.sessions import CSRF_COOKIE, SESSION_COOKIE, Sessions, new_csrf, same
from ssmatch import reference
from ssmatch.auth import Principal
from ssmatch.http import ApiError

HERE = Path(__file__).resolve().parent


class PageRoute(APIRoute):
    """Every workspace route: a visitor who is not signed in is sent to sign in (a page they asked for
    with GET is where they come back to; a CSV export answers 401), and a refusal (`ApiError`, from
    the use cases or the page) is the error page in the visitor's language, never JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                if request.url.path.endswith(".csv"):
                    return Response(status_code=401)
                target = "/ui/?" + urlencode({"next": request.url.path}) if request.method == "GET" else "/ui/"
                return redirect(await page_of(request), target)
            except ApiError as exc:
                return error_page(await page_of(request), exc)

        return page_handler


router = APIRouter(prefix="/ui", include_in_schema=False, route_class=PageRoute)
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
ROLE_NAMES = {"broker": labels.N_("broker"), "seeker": labels.N_("country office"), "provider": labels.N_("provider"), "admin": labels.N_("admin")}
QUEUE_PAGE = 25


def _environment(lang: str) -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html", "svg"]),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    gettext = i18n.gettext_for(lang)
    env.globals.update(
        lang=lang,
        languages=[(code, i18n.language_name(code)) for code in i18n.LANGUAGES],
        sector_name=lambda code: reference.name_in(reference.sector(code), lang) if reference.sector(code) else code,
        modality_name=lambda code: reference.name_in(reference.modality(code), lang) if reference.modality(code) else code,
        sdg_name=lambda n: reference.name_in(reference.sdg(int(n)), lang) if reference.sdg(int(n)) else str(n),
        country_name=lambda code: reference.name_in(reference.country(code), lang) if reference.country(code) else (code or ""),
        tr=lambda word: gettext(word) if word else "",
        status_name=lambda s: gettext(labels.STATUSES.get(s, s)) if s else "",
        lifecycle_name=lambda s: gettext(labels.LIFECYCLE.get(s, s)) if s else "",
        component_name=lambda c: gettext(labels.COMPONENTS.get(c, c.replace("_", " "))),
        role_name=lambda r: gettext(ROLE_NAMES.get(r, r)),
        notification_name=lambda k: gettext(labels.NOTIFICATIONS.get(k, str(k).replace("_", " "))),
        reasons=lambda e: labels.reason_lines(e or {}, gettext, lang),
        bars=lambda e: labels.component_bars(e or {}),
        pct=lambda v: "—" if v is None else f"{round(float(v) * 100)}%",
        groups=labels.GROUPS,
    )
    for name in ("sector_name", "modality_name", "country_name", "tr"):
        env.filters[name] = env.globals[name]
    return env


ENVIRONMENTS = {lang: _environment(lang) for lang in i18n.LANGUAGES}
TAXONOMY: dict[str, Any] = {
    "sectors": [e.code for e in reference.sectors()],
    "modalities": [e.code for e in reference.modalities()],
    "sdgs": list(range(1, 18)),
    "countries": [c.code for c in reference.countries()],
    "regions": labels.REGIONS + labels.SUBREGIONS,
}


@dataclass
class Page:
    """What every page knows about its request: language, session, caller and CSRF token."""

    request: Request
    lang: str
    csrf: str
    session_id: str | None = None
    session: dict[str, Any] | None = None
    caller: Principal | None = None
    org: dict[str, Any] | None = None
    set_cookies: dict[str, str] = field(default_factory=dict)
    unread: int | None = None

    @property
    def catalog(self) -> Catalog:
        """The service layer's context (the same object the JSON API's use cases get)."""
        return self.request.app.state.catalog  # type: ignore[no-any-return]

    def _(self, message: str) -> str:
        return str(i18n.gettext_for(self.lang)(message))


def sessions_of(request: Request) -> Sessions:
    holder = request.app.state
    if not hasattr(holder, "ui_sessions"):
        holder.ui_sessions = Sessions(holder.catalog.store.db)
    return holder.ui_sessions  # type: ignore[no-any-return]


async def page_of(request: Request) -> Page:
    choice = request.query_params.get("lang") or request.cookies.get(i18n.LANG_COOKIE)
    lang = i18n.negotiate(choice, request.headers.get("accept-language"))
    set_cookies: dict[str, str] = {}
    if request.query_params.get("lang") in i18n.LANGUAGES:
        set_cookies[i18n.LANG_COOKIE] = lang
    session_id = request.cookies.get(SESSION_COOKIE)
    session = await sessions_of(request).get(session_id)
    csrf = session["csrf"] if session else (request.cookies.get(CSRF_COOKIE) or "")
    if not session and not csrf:
        csrf = new_csrf()
        set_cookies[CSRF_COOKIE] = csrf
    page = Page(request, lang, csrf, session_id if session else None, session, set_cookies=set_cookies)
    if session:
        page.caller = await request.app.state.authority.resolve(session["token"])
        if page.caller is None:  # token revoked or expired since sign-in
            await sessions_of(request).delete(session_id)
            page.session = page.session_id = None
        elif page.caller.organization_id:
            page.org = await page.catalog.store.get_org(page.caller.organization_id)
    return page


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int | None = 30 * 86400, http_only: bool = True) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=http_only, samesite="lax", secure=request.url.scheme == "https", path="/ui")


def _finish(page: Page, response: Response) -> Response:
    for name, value in page.set_cookies.items():
        _cookie(response, page.request, name, value)
    response.headers["Content-Language"] = page.lang
    response.headers["Vary"] = "Accept-Language, Cookie"
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def render(page: Page, template: str, status: int = 200, **values: Any) -> Response:
    env = ENVIRONMENTS[page.lang]
    html = env.get_template(template).render(page=page, caller=page.caller, org=page.org, csrf=page.csrf, request=page.request,
                                             path=page.request.url.path, query=dict(page.request.query_params), **values)
    return _finish(page, HTMLResponse(html, status_code=status))


def redirect(page: Page, url: str) -> Response:
    return _finish(page, RedirectResponse(url, status_code=303))


def _safe_next(url: str | None, default: str) -> str:
    """Only same-site paths under /ui/ (no scheme, no //host)."""
    if url and url.startswith("/ui/") and not url.startswith("//") and "\\" not in url and "\n" not in url:
        return url
    return default


class SignInRequired(Exception):
    pass


async def signed_in(request: Request, *roles: str) -> Page:
    page = await page_of(request)
    if page.caller is None:
        raise SignInRequired()
    if roles and page.caller.role not in roles:
        raise ApiError(403, page._("This page is not for your role."))
    await _unread(page)
    return page


async def form_of(request: Request, page: Page) -> Any:
    """The posted form, after the CSRF check (403 on mismatch)."""
    form = await request.form()
    if not same(str(form.get("csrf") or ""), page.csrf):
        raise ApiError(403, page._("The form expired or came from another site. Reload the page and try again."), code="csrf")
    return form


def error_page(page: Page, exc: ApiError) -> Response:
    return render(page, "error.html", status=exc.status, error=exc)


# ---- notify (inbox) ----------------------------------------------------------------------------
def notify_url(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    url = getattr(settings, "notify_url", None) if settings else None
    if url:
        return str(url).rstrip("/")
    import os

    return os.environ.get("SSMATCH_NOTIFY_URL", f"http://127.0.0.1:{getattr(settings, 'notify_port', 8002)}").rstrip("/")


_UNREAD_CACHE: dict[str, tuple[float, int | None]] = {}


async def _notify(page: Page, method: str, path: str, **kw: Any) -> httpx.Response:
    assert page.session
    async with httpx.AsyncClient(base_url=notify_url(page.request), timeout=2.0) as client:
        return await client.request(method, path, headers={"Authorization": f"Bearer {page.session['token']}"}, **kw)


async def _unread(page: Page, refresh: bool = False) -> None:
    """Unread count for the navigation, cached a few seconds per session (notify may be down: then none)."""
    if not page.session or page.caller is None or page.caller.role == "admin":
        return
    key = page.session["_id"]
    cached = _UNREAD_CACHE.get(key)
    if cached and not refresh and time.monotonic() - cached[0] < 10:
        page.unread = cached[1]
        return
    try:
        r = await _notify(page, "GET", "/v1/notifications/unread_count")
        page.unread = int(r.json()["unread"]) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        page.unread = None
    if len(_UNREAD_CACHE) > 5000:
        _UNREAD_CACHE.clear()
    _UNREAD_CACHE[key] = (time.monotonic(), page.unread)


# ---- entry, language, sign-in ------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
async def entry(request: Request) -> Response:
    page = await page_of(request)
    if page.caller is None:
        return render(page, "signin.html", next=_safe_next(request.query_params.get("next"), "/ui/"))
    await _unread(page)
    return render(page, "home.html")


@router.get("/lang/{lang}")
async def choose_language(request: Request, lang: str) -> Response:
    page = await page_of(request)
    if lang in i18n.LANGUAGES:
        page.lang = lang
        page.set_cookies[i18n.LANG_COOKIE] = lang
    return redirect(page, _safe_next(request.query_params.get("next"), "/ui/"))


@router.post("/signin")
async def sign_in(request: Request) -> Response:
    page = await page_of(request)
    form = await request.form()
    token = str(form.get("token") or "").strip()
    nxt = _safe_next(str(form.get("next") or ""), "/ui/")
    if not same(str(form.get("csrf") or ""), request.cookies.get(CSRF_COOKIE)):
        page.csrf = page.set_cookies[CSRF_COOKIE] = new_csrf()
        return render(page, "signin.html", status=403, error=page._("The form expired. Please sign in again."), next=nxt)
    caller = await request.app.state.authority.resolve(token) if token else None
    if caller is None:
        return render(page, "signin.html", status=401, error=page._("This token is not valid, expired or was revoked."), next=nxt)
    session_id, _doc = await sessions_of(request).create(token)
    response = redirect(page, nxt)
    _cookie(response, request, SESSION_COOKIE, session_id, max_age=None)
    return response


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    page = await page_of(request)
    await form_of(request, page)
    await sessions_of(request).delete(page.session_id)
    response = redirect(page, "/ui/")
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


# ---- broker queue --------------------------------------------------------------------------------
def queue_filters(request: Request) -> tuple[dict[str, Any], list[str]]:
    return queue_filters_of(dict(request.query_params))


def queue_filters_of(q: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The queue filters from a query string (bad values are dropped and named)."""
    out: dict[str, Any] = {}
    dropped: list[str] = []

    def number(name: str, lo: float, hi: float, cast: Any = float) -> None:
        raw = q.get(name)
        if raw in (None, ""):
            return
        try:
            value = cast(raw)
        except ValueError:
            dropped.append(name)
            return
        if lo <= value <= hi:
            out[name] = value
        else:
            dropped.append(name)

    number("sdg", 1, 17, int)
    number("min_score", 0, 1)
    number("max_score", 0, 1)
    number("max_age_days", 0, 36500)
    number("min_age_days", 0, 36500)
    out["status"] = q.get("status") if q.get("status") in ("proposed", "approved", "rejected") else "proposed"
    for name, allowed in (("sector", TAXONOMY["sectors"]), ("modality", TAXONOMY["modalities"]), ("region", TAXONOMY["regions"]),
                          ("group", list(labels.GROUPS)), ("sort", ["score", "age"])):
        raw = q.get(name)
        if raw:
            if raw in allowed:
                out[name] = raw
            else:
                dropped.append(name)
    for name in ("need_language", "offer_language"):
        language = q.get(name)
        if language:
            if len(language) == 2 and language.isalpha():
                out[name] = language.lower()
            else:
                dropped.append(name)
    return out, dropped


@router.get("/queue", response_class=HTMLResponse)
async def queue(request: Request) -> Response:
    page = await signed_in(request, "broker", "admin")
    filters, dropped = queue_filters(request)
    cursor = request.query_params.get("cursor") or None
    items, next_cursor = await usecases.list_queue(page.catalog, page.caller, filters, QUEUE_PAGE, cursor)  # type: ignore[arg-type]
    here = str(request.url.path) + ("?" + request.url.query if request.url.query else "")
    next_url = "/ui/queue?" + urlencode({**{k: v for k, v in filters.items()}, "cursor": next_cursor}) if next_cursor else None
    csv_url = "/ui/queue.csv" + ("?" + request.url.query if request.url.query else "")
    return render(page, "queue.html", items=items, filters=filters, dropped=dropped, next_url=next_url, here=here,
                  csv_url=csv_url, taxonomy=TAXONOMY, done=request.query_params.get("done"))


@router.get("/queue.csv")
async def queue_csv(request: Request) -> Response:
    """The rows the queue page shows, same filters and cursor."""
    page = await signed_in(request, "broker", "admin")
    filters, _ = queue_filters(request)
    items, _ = await usecases.list_queue(page.catalog, page.caller, filters, QUEUE_PAGE, request.query_params.get("cursor") or None)  # type: ignore[arg-type]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["match_id", "need_id", "offer_id", "need_title", "offer_title", "score", "status", "proposed_at"])
    for m in items:
        writer.writerow([m["id"], m["need_id"], m["offer_id"], _cell(m.get("need_title")), _cell(m.get("offer_title")),
                         f"{float(m['score']):.4f}", m["status"], m.get("proposed_at", "")])
    return _csv_response(page, buf.getvalue(), "queue.csv")


def _cell(value: Any) -> str:
    """CSV cells that a spreadsheet would run as a formula get a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_response(page: Page, body: str, name: str) -> Response:
    response = Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return _finish(page, response)


@router.post("/queue/bulk")
async def queue_bulk(request: Request) -> Response:
    page = await signed_in(request, "broker", "admin")
    form = await form_of(request, page)
    decision = str(form.get("decision") or "")
    if decision not in ("approve", "reject"):
        raise ApiError(422, page._("Choose approve or reject."))
    ids = [str(i) for i in form.getlist("ids")][:50]
    note = str(form.get("note") or "")[:2000] or None
    results = await usecases.bulk_decide(page.catalog, page.caller, [(i, decision, note) for i in ids])  # type: ignore[arg-type]
    back = _safe_next(str(form.get("next") or ""), "/ui/queue")
    return render(page, "bulk_result.html", results=results, back=back)


# ---- a match --------------------------------------------------------------------------------------
async def _neighbours(page: Page, match: dict[str, Any], back: str) -> tuple[str | None, str | None]:
    """The previous and next matches around this one on the queue page the broker came from."""
    if page.caller is None or page.caller.role not in ("broker", "admin") or match["status"] != "proposed":
        return None, None
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(back)
    query = dict(parse_qsl(parts.query))
    filters, _ = queue_filters_of(query)
    try:
        items, _ = await usecases.list_queue(page.catalog, page.caller, filters, QUEUE_PAGE, query.get("cursor") or None)
    except ApiError:
        return None, None
    ids = [m["id"] for m in items]
    if match["id"] not in ids:
        return None, (ids[0] if ids else None)
    at = ids.index(match["id"])
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


@router.get("/matches/{match_id}", response_class=HTMLResponse)
async def match_page(request: Request, match_id: str) -> Response:
    page = await signed_in(request)
    match = await usecases.get_match(page.catalog, page.caller, match_id)  # type: ignore[arg-type]
    back = _safe_next(request.query_params.get("back"), "/ui/queue")
    if page.caller.role in ("broker", "admin") and match["status"] == "proposed":  # type: ignore[union-attr]
        claimed = await usecases.claim(page.catalog, page.caller, match_id)  # type: ignore[arg-type]
        if claimed is not None:
            match.update({k: v for k, v in claimed.items() if k != "match_id"})
        else:
            match = await usecases.get_match(page.catalog, page.caller, match_id)  # type: ignore[arg-type]
    need = await _item_or_none(page, "need", match["need_id"])
    offer = await _item_or_none(page, "offer", match["offer_id"])
    prev_id, next_id = await _neighbours(page, match, back)
    mine = page.caller is not None and (match.get("claimed_by") in (None, page.caller.organization_id or "admin"))
    return render(page, "match.html", m=match, need=need, offer=offer, prev_id=prev_id, next_id=next_id, mine=mine,
                  events=usecases.allowed_steps(match, page.caller), outcome_form=usecases.accepts_outcome(),  # type: ignore[arg-type]
                  back=back, done=request.query_params.get("done"))


async def _item_or_none(page: Page, kind: str, item_id: str) -> dict[str, Any] | None:
    """The item beside the match, or None when the caller may no longer see it (withdrawn, a draft)."""
    try:
        return await usecases.get_item(page.catalog, page.caller, kind, item_id)  # type: ignore[arg-type]
    except ApiError:
        return None


@router.post("/matches/{match_id}/decision")
async def decide(request: Request, match_id: str) -> Response:
    page = await signed_in(request, "broker", "admin")
    form = await form_of(request, page)
    decision = str(form.get("decision") or "")
    if decision not in ("approve", "reject"):
        raise ApiError(422, page._("Choose approve or reject."))
    note = str(form.get("note") or "").strip()[:2000] or None
    await usecases.decide(page.catalog, page.caller, match_id, decision, note)  # type: ignore[arg-type]
    done = "approved" if decision == "approve" else "rejected"
    nxt = _safe_next(str(form.get("next") or ""), f"/ui/matches/{match_id}")
    return redirect(page, nxt + ("&" if "?" in nxt else "?") + "done=" + done)


@router.post("/matches/{match_id}/release")
async def release(request: Request, match_id: str) -> Response:
    """Let go of a match without deciding it, so another broker may take it at once."""
    page = await signed_in(request, "broker", "admin")
    form = await form_of(request, page)
    await usecases.release(page.catalog, page.caller, match_id)  # type: ignore[arg-type]
    return redirect(page, _safe_next(str(form.get("next") or ""), "/ui/queue"))


def _int(form: Any, name: str) -> int | None:
    raw = str(form.get(name) or "").strip()
    return int(raw) if raw.isdigit() else None


@router.post("/matches/{match_id}/lifecycle")
async def lifecycle(request: Request, match_id: str) -> Response:
    try:
        page = await signed_in(request)
        form = await form_of(request, page)
        event = str(form.get("event") or "")
        note = str(form.get("note") or "").strip()[:2000] or None
        outcome = None
        if event == "completed" and usecases.accepts_outcome():
            amount = str(form.get("amount") or "").strip()
            outcome = {
                "results": str(form.get("results") or "").strip()[:5000] or None,
                "people_trained": _int(form, "people_trained"),
                "beneficiaries": _int(form, "beneficiaries"),
                "countries": [c for c in form.getlist("countries") if c][:250],
                "resources_mobilised": {"amount": float(amount), "currency": str(form.get("currency") or "USD").upper()[:3]}
                if amount.replace(".", "", 1).isdigit() else None,
                "gender_responsive": form.get("gender_responsive") == "yes",
            }
            outcome = {k: v for k, v in outcome.items() if v is not None}
        await usecases.record_step(page.catalog, page.caller, match_id, event, note, outcome)  # type: ignore[arg-type]
    except ValidationError as exc:
        return error_page(await page_of(request), ApiError(422, "; ".join(f"{f}: {m}" for f, m in usecases.validation_messages(exc))))
    return redirect(page, f"/ui/matches/{match_id}?done={event}")


@router.get("/matches", response_class=HTMLResponse)
async def my_matches(request: Request) -> Response:
    page = await signed_in(request, "seeker", "provider")
    items = await usecases.party_matches(page.catalog, page.caller)  # type: ignore[arg-type]
    return render(page, "my_matches.html", items=items)


@router.get("/search", response_class=HTMLResponse)
async def search(request: Request) -> Response:
    """Look before posting: needs or offers by words and by meaning, in any language."""
    page = await signed_in(request)
    q = (request.query_params.get("q") or "").strip()[:200]
    kind = "need" if request.query_params.get("kind") == "needs" else "offer"
    result: dict[str, Any] | None = None
    if q:
        try:
            result = await usecases.search_items(page.catalog, page.caller, kind, q, (page.session or {}).get("token"))  # type: ignore[arg-type]
        except ValidationError as exc:
            raise ApiError(422, "; ".join(m for _, m in usecases.validation_messages(exc))) from None
    return render(page, "search.html", q=q, kind=kind, result=result)


# ---- needs and offers -----------------------------------------------------------------------------
KINDS = {"needs": "need", "offers": "offer"}
OWNER_ROLE = {"need": "seeker", "offer": "provider"}


@router.get("/{kinds}", response_class=HTMLResponse)
async def items(request: Request, kinds: str) -> Response:
    if kinds not in KINDS:
        return error_page(await page_of(request), ApiError(404, "not found"))
    kind = KINDS[kinds]
    page = await signed_in(request, OWNER_ROLE[kind])
    docs = await usecases.my_items(page.catalog, page.caller, kind)  # type: ignore[arg-type]
    return render(page, "items.html", kind=kind, items=docs, done=request.query_params.get("done"))


def _split_list(value: Any) -> list[str]:
    """A free-text list field: entries separated by commas or semicolons, blanks dropped."""
    return [s.strip() for s in str(value or "").replace(";", ",").split(",") if s.strip()]


def _form_fields(form: Any, kind: str) -> dict[str, Any]:
    """The item fields of a posted form (API field names; lists from checkboxes and selects)."""
    fields: dict[str, Any] = {
        "title": str(form.get("title") or ""),
        "description": str(form.get("description") or ""),
        "sdgs": [int(s) for s in form.getlist("sdgs") if str(s).isdigit()],
        "sectors": [str(s) for s in form.getlist("sectors")],
        "modalities": [str(s) for s in form.getlist("modalities")],
        "languages": [s.lower() for s in _split_list(form.get("languages"))],
        "sdg_targets": _split_list(form.get("sdg_targets")),
        "keywords": _split_list(form.get("keywords")),
        "gender_responsive": form.get("gender_responsive") == "yes",
    }
    if form.get("country"):
        fields["country"] = str(form.get("country"))
    if kind == "offer":
        fields["delivery_countries"] = [str(s) for s in form.getlist("delivery_countries") if s]
        fields["delivery_regions"] = [str(s) for s in form.getlist("delivery_regions") if s]
    else:
        if form.get("urgency") in ("low", "medium", "high"):
            fields["urgency"] = str(form.get("urgency"))
    return fields


def _editable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("title", "description", "sdgs", "sectors", "modalities", "languages", "sdg_targets", "keywords",
                                     "gender_responsive", "country", "delivery_countries", "delivery_regions", "urgency") if k in doc}


@router.get("/{kinds}/new", response_class=HTMLResponse)
async def new_item(request: Request, kinds: str) -> Response:
    if kinds not in KINDS:
        return error_page(await page_of(request), ApiError(404, "not found"))
    kind = KINDS[kinds]
    page = await signed_in(request, OWNER_ROLE[kind])
    values = {"languages": [page.lang], "country": (page.org or {}).get("country")}
    return render(page, "item_form.html", kind=kind, values=values, errors=[], taxonomy=TAXONOMY, item=None,
                  idem=new_csrf())


@router.post("/{kinds}/new")
async def post_item(request: Request, kinds: str) -> Response:
    if kinds not in KINDS:
        return error_page(await page_of(request), ApiError(404, "not found"))
    kind = KINDS[kinds]
    page = await signed_in(request, OWNER_ROLE[kind])
    form = await form_of(request, page)
    fields = _form_fields(form, kind)
    try:
        view = await usecases.post_item(page.catalog, page.caller, kind, fields, str(form.get("idem") or "")[:100] or None)  # type: ignore[arg-type]
    except ValidationError as exc:
        return render(page, "item_form.html", status=422, kind=kind, values=fields, errors=usecases.validation_messages(exc),
                      taxonomy=TAXONOMY, item=None, idem=str(form.get("idem") or new_csrf()))
    return redirect(page, f"/ui/{kinds}/{view['id']}?done=posted")


@router.get("/{kinds}/{item_id}", response_class=HTMLResponse)
async def item_page(request: Request, kinds: str, item_id: str) -> Response:
    if kinds not in KINDS:
        return error_page(await page_of(request), ApiError(404, "not found"))
    kind = KINDS[kinds]
    page = await signed_in(request)
    doc = await usecases.get_item(page.catalog, page.caller, kind, item_id)  # type: ignore[arg-type]
    mine = page.caller is not None and (page.caller.organization_id == doc.get("organization_id") or page.caller.role in ("admin", "broker"))
    matches = await usecases.item_matches(page.catalog, page.caller, kind, item_id) if mine else []  # type: ignore[arg-type]
    return render(page, "item.html", kind=kind, item=doc, matches=matches, done=request.query_params.get("done"),
                  owner=page.caller is not None and page.caller.organization_id == doc.get("organization_id"))


@router.get("/{kinds}/{item_id}/edit", response_class=HTMLResponse)
async def edit_item_form(request: Request, kinds: str, item_id: str) -> Response:
    if kinds not in KINDS:
        return error_page(await page_of(request), ApiError(404, "not found"))
    kind = KINDS[kinds]
    page = await signed_in(request, OWNER_ROLE[kind])
    doc = await usecases.get_item(page.catalog, page.caller, kind, item_id)  # type: ignore[arg-type]
    return render(page, "item_form.html", kind=kind, values=_editable(doc), errors=[], taxonomy=TAXONOMY, item=doc, idem="")


@router.post("/{kinds}/{item_id}/edit")
async def edit_item(request: Request, kinds: str, item_id: str) -> Response:
    if kinds not in KINDS:
        return error_page(await page_of(request), ApiError(404, "not found"))
    kind = KINDS[kinds]
    page = await signed_in(request, OWNER_ROLE[kind])
    form = await form_of(request, page)
    fields = _form_fields(form, kind)
    revision = _int(form, "revision") or 0
    try:
        await usecases.edit_item(page.catalog, page.caller, kind, item_id, fields, revision)  # type: ignore[arg-type]
    except ValidationError as exc:
        doc = await usecases.get_item(page.catalog, page.caller, kind, item_id)  # type: ignore[arg-type]
        return render(page, "item_form.html", status=422, kind=kind, values=fields, errors=usecases.validation_messages(exc),
                      taxonomy=TAXONOMY, item=doc, idem="")
    return redirect(page, f"/ui/{kinds}/{item_id}?done=saved")


@router.post("/{kinds}/{item_id}/withdraw")
async def withdraw(request: Request, kinds: str, item_id: str) -> Response:
    if kinds not in KINDS:
        return error_page(await page_of(request), ApiError(404, "not found"))
    kind = KINDS[kinds]
    page = await signed_in(request, OWNER_ROLE[kind])
    await form_of(request, page)
    await usecases.withdraw_item(page.catalog, page.caller, kind, item_id)  # type: ignore[arg-type]
    return redirect(page, f"/ui/{kinds}?done=withdrawn")
