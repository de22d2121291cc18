"""`ssmatch` command line: bulk import of needs/offers through the catalog API, and replay of open items.

    ssmatch import needs FILE [--token T] [--catalog-url URL] [--dry-run] [--report errors.csv]
    ssmatch import offers FILE ...
    ssmatch replay

`import` reads a CSV or XLSX file (columns = API field names, list fields separated by `;`; see
services/catalog/importer.py), validates every row with the API's own models and posts the valid ones to
`POST /v1/needs` or `/v1/offers` with an Idempotency-Key made of the file's hash and the row number: running
the same import again (after a crash, a network error or a fix to some rows) creates nothing twice. It
waits when the catalog answers 429 (Retry-After) and retries transient failures. The report lists every
failed row as (row, column, reason); the exit status is 0 when every row was imported, 1 when some rows
failed, 2 when the import could not run (unreadable file, refused token, catalog unreachable).

`replay` queues the current state of every open need and offer again in the catalog's outbox, for a running
catalog's relay to publish (e.g. after a rules change). It finds the store exactly as the services do
(MONGODB_URI, else the embedded store on SSMATCH_MONGO_PORT; SSMATCH_CATALOG_DB). A broker that lost its topics
needs no replay: the relay notices and re-relays what the outbox retains.

This is the `ssmatch` console script. It lives with the catalog because both commands are the catalog's
(its importer, its store); the shared `ssmatch` package never imports a service.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_ROWS_FAILED, EXIT_ERROR = 0, 1, 2


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal, every 10% otherwise)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.label, self.done, self.failed = total, label, 0, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 0
        self.tty = self.stream.isatty()
        self._last_decile = -1

    def advance(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        if not self.enabled:
            return
        if self.tty:
            self._draw("\r")
        else:
            decile = self.done * 10 // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self._draw("")
                self.stream.write("\n")

    def _draw(self, prefix: str) -> None:
        width = 30
        filled = width * self.done // self.total
        self.stream.write(
            f"{prefix}{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} rows, {self.failed} failed"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _column_from_path(path: str | None) -> str | None:
    """'$.sdgs[0]' -> 'sdgs', '$.budget.amount' -> 'budget.amount', '$' -> None."""
    if not path or not path.startswith("$."):
        return None
    parts = [p.split("[", 1)[0] for p in path[2:].split(".")]
    return ".".join(p for p in parts if p) or None


def _api_errors(row: int, response: Any) -> list[dict[str, Any]]:
    try:
        error = response.json()["error"]
    except Exception:  # noqa: BLE001 - not our error body: report the status
        return [{"row": row, "column": None, "reason": f"HTTP {response.status_code}"}]
    details = error.get("details")
    if isinstance(details, list) and details:
        return [{"row": row, "column": _column_from_path(d.get("path")), "reason": d.get("message", error["message"])} for d in details]
    return [{"row": row, "column": None, "reason": error.get("message", f"HTTP {response.status_code}")}]


def run_import(
    kind: str,
    path: Path,
    *,
    token: str | None,
    catalog_url: str,
    dry_run: bool = False,
    progress: bool = True,
    max_attempts: int = 6,
    client: Any = None,
) -> dict[str, Any]:
    """Import one file; returns {rows, created, existing, valid, failed, errors, fatal}."""
    import httpx

    from services.catalog.importer import ImportFileError, import_key, read_table, validate_table

    item_kind = kind.rstrip("s")
    result: dict[str, Any] = {"kind": item_kind, "dry_run": dry_run, "rows": 0, "created": 0, "existing": 0, "valid": 0, "failed": 0, "errors": [], "fatal": None}
    try:
        table = read_table(path.read_bytes(), path.name)
    except (OSError, ImportFileError) as exc:
        result["fatal"] = f"cannot read {path}: {exc}"
        return result
    rows, header_errors = validate_table(item_kind, table)
    result["rows"] = len(table.rows)
    if header_errors:
        result["errors"] = [e.as_dict() for e in header_errors]
        result["failed"] = len(table.rows)
        return result
    bar = Progress(len(rows), f"{'checking' if dry_run else 'importing'} {kind}", enabled=progress)
    own_client = client is None
    if own_client and not dry_run:
        client = httpx.Client(base_url=catalog_url, timeout=30.0, headers={"Authorization": f"Bearer {token}"})
    try:
        for row in rows:
            if row.errors or row.model is None:
                result["failed"] += 1
                result["errors"] += [e.as_dict() for e in row.errors]
                bar.advance(failed=True)
                continue
            result["valid"] += 1
            if dry_run:
                bar.advance()
                continue
            outcome = _post_row(client, f"/v1/{kind}", row.body(), import_key(table.sha256, row.row), max_attempts)
            if outcome["fatal"]:
                result["fatal"] = outcome["fatal"]
                break
            if outcome["errors"]:
                result["valid"] -= 1
                result["failed"] += 1
                result["errors"] += [{**e, "row": row.row} for e in outcome["errors"]]
            elif outcome["replayed"]:
                result["existing"] += 1
            else:
                result["created"] += 1
            bar.advance(failed=bool(outcome["errors"]))
    finally:
        bar.close()
        if own_client and client is not None:
            client.close()
    return result


class _Transient(Exception):
    """A failure worth retrying with the same Idempotency-Key (network, 429, 5xx)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def _retry_wait(state: Any) -> float:
    """The catalog's Retry-After when it sent one, else exponential backoff (0.5 s doubling to 10 s)."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Transient) and exc.retry_after_s is not None:
        return exc.retry_after_s
    return float(min(0.5 * 2 ** (state.attempt_number - 1), 10.0))


def _post_row(client: Any, url: str, body: dict[str, Any], key: str, max_attempts: int) -> dict[str, Any]:
    import httpx
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

    try:
        for attempt in Retrying(
            stop=stop_after_attempt(max_attempts), wait=_retry_wait, retry=retry_if_exception_type(_Transient), reraise=True
        ):
            with attempt:
                try:
                    response = client.post(url, json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError as exc:  # connection refused, timeout: the same key makes a retry safe
                    raise _Transient(f"catalog unreachable: {type(exc).__name__}: {exc}") from exc
                if response.status_code in (200, 201):
                    return {"fatal": None, "errors": [], "replayed": response.headers.get("idempotent-replayed") == "true"}
                if response.status_code == 429:
                    raise _Transient("rate limited by the catalog", float(response.headers.get("retry-after", "1")))
                if response.status_code in (401, 403):
                    reason = _api_errors(0, response)[0]["reason"]
                    return {"fatal": f"the catalog refused the token (HTTP {response.status_code}): {reason}", "errors": [], "replayed": False}
                if response.status_code >= 500:
                    raise _Transient(f"catalog error HTTP {response.status_code}")
                return {"fatal": None, "errors": _api_errors(0, response), "replayed": False}
    except _Transient as exc:
        return {"fatal": exc.reason or "too many retries", "errors": [], "replayed": False}
    return {"fatal": "too many retries", "errors": [], "replayed": False}


def _print_report(result: dict[str, Any], out: TextIO, report_path: Path | None) -> None:
    figures = ("rows", "valid", "created", "existing", "failed") if not result["dry_run"] else ("rows", "valid", "failed")
    out.write(" ".join(f"{k}={result[k]}" for k in figures) + ("  (dry run: nothing was sent)" if result["dry_run"] else "") + "\n")
    if result["errors"]:
        out.write("row\tcolumn\treason\n")
        for e in result["errors"]:
            out.write(f"{e['row']}\t{e['column'] or '-'}\t{e['reason']}\n")
    if report_path is not None:
        with report_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["row", "column", "reason"])
            writer.writeheader()
            writer.writerows({"row": e["row"], "column": e["column"] or "", "reason": e["reason"]} for e in result["errors"])


def cmd_import(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("SSMATCH_TOKEN")
    if not args.dry_run and not token:
        print("ssmatch import: --token (or SSMATCH_TOKEN) is needed unless --dry-run", file=sys.stderr)
        return EXIT_ERROR
    result = run_import(
        args.kind, Path(args.file), token=token, catalog_url=args.catalog_url, dry_run=args.dry_run, progress=not args.quiet
    )
    _print_report(result, sys.stdout, Path(args.report) if args.report else None)
    if result["fatal"]:
        print(f"ssmatch import: {result['fatal']}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ROWS_FAILED if result["failed"] else EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from services.catalog.store import CatalogStore
    from ssmatch.mongo import make_client
    from ssmatch.settings import Settings

    settings = Settings()

    async def replay() -> int:
        client = make_client(settings.mongodb_uri)
        try:
            return await CatalogStore(client, settings.catalog_db).republish_open_items()
        finally:
            await client.close()

    queued = asyncio.run(replay())
    print(f"queued={queued}")
    print(f"the catalog's outbox relay publishes them; check /metrics (ssmatch_outbox_pending) on {args.catalog_url}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    default_url = f"http://127.0.0.1:{os.environ.get('CATALOG_PORT', '8000')}"
    parser = argparse.ArgumentParser(prog="ssmatch", description="South-South Match command line")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import needs or offers from a CSV or XLSX file through the catalog API")
    imp.add_argument("kind", choices=["needs", "offers"])
    imp.add_argument("file", help="CSV (UTF-8) or XLSX; first row = API field names; lists separated by ';'")
    imp.add_argument("--token", help="bearer token of the office/provider (default: $SSMATCH_TOKEN)")
    imp.add_argument("--catalog-url", default=default_url, help=f"catalog base URL (default {default_url})")
    imp.add_argument("--dry-run", action="store_true", help="validate every row, send nothing")
    imp.add_argument("--report", help="also write the row-level errors to this CSV file")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_import)
    rep = sub.add_parser("replay", help="queue every open need and offer again for publishing (after a rules change)")
    rep.add_argument("--catalog-url", default=default_url, help=argparse.SUPPRESS)
    rep.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
