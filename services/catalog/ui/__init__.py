"""The web workspace served by the catalog under /ui (see routes.py)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


class _CachedStatic(StaticFiles):
    """Static files revalidate by ETag but may be reused for a day: on a slow link the second page loads only HTML."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=86400"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount(app: FastAPI, settings: object | None = None) -> None:
    """Add the workspace pages and their static files to the catalog app."""
    app.state.settings = settings
    from services.catalog.ui import routes, routes_extra

    app.mount("/ui/static", _CachedStatic(directory=STATIC), name="ui-static")  # before /ui/{kinds}/{id}
    app.include_router(routes_extra.router)
    app.include_router(routes.router)
