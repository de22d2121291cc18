"""Bulk import of needs and offers from CSV or XLSX, shared by `POST /v1/imports` and `ssmatch import`.

File format: the first row names the columns, which are API field names (`title`, `sdgs`, ...; nested
fields with a dot: `budget.amount`, `time_window.start`); list fields take several values separated by
`;` (`2;6`), `attributes` takes a JSON object. Empty cells are left out (the API default applies).
Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is row 2.

Every row goes through the same models as `POST /v1/needs` / `POST /v1/offers` and is created with an
Idempotency-Key derived from the file's SHA-256 and the row number (`import_key`), so importing the same
file again — through the API upload or the CLI, even half-way through — creates nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from pydantic import BaseModel, ValidationError

from services.catalog.models import ItemFields, NeedCreate, OfferCreate

MAX_ROWS = 5000
MAX_FILE_BYTES = 10 * 1024 * 1024
LIST_SEPARATOR = ";"
MODELS: dict[str, type[ItemFields]] = {"need": NeedCreate, "offer": OfferCreate}


class ImportFileError(Exception):
    """The file as a whole cannot be read (status: the HTTP status the API answers with)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Table:
    sha256: str
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (row number, column -> cell text), empty rows left out


@dataclass
class RowError:
    row: int
    column: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason}


@dataclass
class ValidatedRow:
    row: int
    model: ItemFields | None = None
    errors: list[RowError] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The JSON body to POST: only the fields the row set (so server-side defaults still apply)."""
        assert self.model is not None
        return self.model.model_dump(mode="json", exclude_unset=True)


def import_key(file_sha256: str, row: int) -> str:
    return f"import-{file_sha256[:32]}-row-{row}"


# ---- reading files --------------------------------------------------------------------------
def read_table(data: bytes, filename: str = "") -> Table:
    """Read a CSV (UTF-8, with or without BOM; `,` or `;` delimited) or XLSX file into rows of text cells."""
    if len(data) > MAX_FILE_BYTES:
        raise ImportFileError(f"file over {MAX_FILE_BYTES // (1024 * 1024)} MB", status=413)
    sha = hashlib.sha256(data).hexdigest()
    name = filename.lower()
    if data[:4] == b"PK\x03\x04" or name.endswith((".xlsx", ".xlsm")):
        raw_rows = _xlsx_rows(data)
    elif name.endswith((".csv", ".txt")) or not name or _looks_like_text(data):
        raw_rows = _csv_rows(data)
    else:
        raise ImportFileError("unsupported file type: upload a .csv (UTF-8) or .xlsx file", status=415)
    if not raw_rows or not any(c.strip() for c in raw_rows[0]):
        raise ImportFileError("the file is empty: the first row must name the columns (API field names)")
    columns = [c.strip() for c in raw_rows[0]]
    rows: list[tuple[int, dict[str, str]]] = []
    for number, cells in enumerate(raw_rows[1:], start=2):
        values = {columns[i]: cell.strip() for i, cell in enumerate(cells) if i < len(columns) and columns[i] and cell.strip()}
        if values:
            rows.append((number, values))
        if len(rows) > MAX_ROWS:
            raise ImportFileError(f"over {MAX_ROWS} rows: split the file", status=413)
    return Table(sha, columns, rows)


def _looks_like_text(data: bytes) -> bool:
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data[:4096]


def _csv_rows(data: bytes) -> list[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"the CSV file is not UTF-8 (byte {exc.start}): save it as 'CSV UTF-8'") from exc
    if "\x00" in text:
        raise ImportFileError("the CSV file contains NUL bytes")
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") and "," not in first_line else ","
    try:
        return [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]
    except csv.Error as exc:
        raise ImportFileError(f"the CSV file cannot be parsed: {exc}") from exc


def _xlsx_rows(data: bytes) -> list[list[str]]:
    try:
        from openpyxl import load_workbook

        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise ImportFileError(f"the XLSX file cannot be read: {type(exc).__name__}") from exc
    try:
        sheet = workbook.worksheets[0]
        return [[_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) and value.tzinfo is None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# ---- rows to bodies -------------------------------------------------------------------------
def _is_list_field(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields.get(name)
    if info is None:
        return False
    annotation = info.annotation
    return any(typing.get_origin(candidate) is list for candidate in (annotation, *typing.get_args(annotation)))


def unknown_columns(kind: str, columns: list[str]) -> list[str]:
    model = MODELS[kind]
    out = []
    for column in columns:
        if not column:
            continue
        top, _, sub = column.partition(".")
        info = model.model_fields.get(top)
        if info is None:
            out.append(column)
        elif sub:
            nested = _nested_model(info.annotation)
            if nested is None or sub not in nested.model_fields:
                out.append(column)
    return out


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types an annotation allows (Annotated, Optional and unions unwrapped; lists not entered)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        out: set[Any] = set()
        for arg in typing.get_args(annotation):
            out |= _leaf_types(arg)
        return out
    return {origin or annotation}


def _list_item_type(annotation: Any) -> Any:
    for candidate in _leaf_types(annotation):
        if candidate is list:
            break
    else:
        return str
    stack = [annotation]
    while stack:
        current = stack.pop()
        if typing.get_origin(current) is list:
            return typing.get_args(current)[0]
        stack += list(typing.get_args(current))
    return str


TRUE, FALSE = {"true", "yes", "y", "1", "x", "oui", "sí", "si", "sim"}, {"false", "no", "n", "0", "non", "não", "nao"}


def _coerce(annotation: Any, text: str) -> Any:
    """A cell's text as the JSON type the field takes (bool, int, float), else the text itself."""
    types_ = _leaf_types(annotation)
    if bool in types_:
        low = text.casefold()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        return text
    if int in types_ and text.lstrip("+-").isdigit():
        return int(text)
    if float in types_:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def row_to_body(kind: str, cells: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Cell texts to a request body; returns (body, [(column, reason)]) for cells that cannot be converted."""
    model = MODELS[kind]
    body: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for column, text in cells.items():
        top, _, sub = column.partition(".")
        if sub:
            body.setdefault(top, {})
            nested = _nested_model(model.model_fields[top].annotation) if top in model.model_fields else None
            if isinstance(body[top], dict):
                info = nested.model_fields.get(sub) if nested else None
                body[top][sub] = _coerce(info.annotation, text) if info else text
            continue
        if top == "attributes":
            try:
                body[top] = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append((column, f"not a JSON object: {exc.msg}"))
            continue
        info = model.model_fields.get(top)
        if info is None:
            body[top] = text
        elif _is_list_field(model, top):
            item_type = _list_item_type(info.annotation)
            body[top] = [_coerce(item_type, v.strip()) for v in text.split(LIST_SEPARATOR) if v.strip()]
        else:
            body[top] = _coerce(info.annotation, text)
    return body, problems


def _column_of(loc: tuple[Any, ...]) -> str | None:
    names = [str(p) for p in loc if not isinstance(p, int)]
    # pydantic adds the validator's name to some locations (e.g. "function-after[...]"): keep field names.
    names = [n for n in names if "[" not in n]
    return ".".join(names[:2]) or None


def validate_row(kind: str, row: int, cells: dict[str, str]) -> ValidatedRow:
    body, problems = row_to_body(kind, cells)
    result = ValidatedRow(row)
    result.errors = [RowError(row, column, reason) for column, reason in problems]
    try:
        model = MODELS[kind].model_validate(body)
    except ValidationError as exc:
        bad = {e.column for e in result.errors}
        for err in exc.errors():
            column = _column_of(tuple(err.get("loc", ())))
            if column in bad:
                continue
            reason = err.get("msg", "invalid")
            if err.get("type") == "missing":
                reason = "required: this column must have a value"
            result.errors.append(RowError(row, column, reason))
        return result
    if not result.errors:
        result.model = model
    return result


def validate_table(kind: str, table: Table) -> tuple[list[ValidatedRow], list[RowError]]:
    """Every row validated; header problems (unknown columns) come back as row-1 errors and stop the import."""
    header_errors = [
        RowError(1, column, f"unknown column: not a field of a {kind} (see the API docs for field names)")
        for column in unknown_columns(kind, table.columns)
    ]
    duplicates = sorted({c for c in table.columns if c and table.columns.count(c) > 1})
    header_errors += [RowError(1, c, "column appears more than once") for c in duplicates]
    if header_errors:
        return [], header_errors
    return [validate_row(kind, number, cells) for number, cells in table.rows], []


async def import_rows(
    store: Any,
    caller: Any,
    org: dict[str, Any],
    kind: str,
    table: Table,
    *,
    dry_run: bool,
    request_hash: Callable[[Any], str],
) -> dict[str, Any]:
    """Validate (and unless dry_run, create) every row through CatalogStore.create_item."""
    from services.catalog.domain.errors import DomainError

    rows, header_errors = validate_table(kind, table)
    errors: list[RowError] = list(header_errors)
    created = existing = valid = 0
    failed = len(table.rows) if header_errors else 0
    for row in rows:
        if row.errors or row.model is None:
            failed += 1
            errors += row.errors
            continue
        valid += 1
        if dry_run:
            continue
        try:
            _, _, replayed = await store.create_item(
                kind, caller, org, row.model, import_key(table.sha256, row.row), request_hash(row.model.model_dump(mode="json"))
            )
        except DomainError as exc:
            failed += 1
            valid -= 1
            errors.append(RowError(row.row, None, exc.message))
            continue
        if replayed:
            existing += 1
        else:
            created += 1
    return {
        "kind": kind,
        "dry_run": dry_run,
        "rows": len(table.rows),
        "created": created,
        "existing": existing,
        "valid": valid,
        "failed": failed,
        "errors": [e.as_dict() for e in errors],
    }
