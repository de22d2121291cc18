"""E-mail over SMTP: build a multipart/alternative message and send it with the standard library.

Why stdlib ``smtplib`` in a thread rather than an async SMTP client: one fewer dependency, and an
SMTP send is a short blocking exchange whose duration ``timeout`` bounds. Errors are wrapped in
``EmailSendError`` with ``transient`` set for what is worth retrying (network trouble, 4xx replies)
and not for what is not (5xx replies such as an unknown mailbox or refused credentials).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class SmtpSettings(BaseModel):
    """How to reach the SMTP relay. The service builds this from its environment settings.

    ``security``: ``"ssl"`` is implicit TLS (usually port 465), ``"starttls"`` upgrades a plain
    connection (usually 587) and fails if the server does not offer it, ``"none"`` is for a relay on
    a trusted network or tests. ``ca_file`` names extra CA certificates to trust (a private relay).
    Credentials are only sent over TLS unless ``allow_plaintext_auth``.
    """

    model_config = ConfigDict(frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(min_length=3, description="From address, e.g. 'South-South Match <noreply@example.org>'")
    timeout: float = Field(10.0, gt=0)
    ca_file: str | None = None
    allow_plaintext_auth: bool = False

    @model_validator(mode="after")
    def _credentials_need_tls(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username and self.security == "none" and not self.allow_plaintext_auth:
            raise ValueError("refusing to send SMTP credentials without TLS (set allow_plaintext_auth)")
        return self


class EmailSendError(Exception):
    """Sending failed. ``transient``: a later retry may succeed."""

    def __init__(self, message: str, *, transient: bool, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.smtp_code = smtp_code


def delivery_message_id(delivery_id: str) -> str:
    """A valid, stable Message-ID for a delivery record: the same record always gets the same id (a
    re-send after a crash is recognisably the same message), and ids that are not valid msg-id text
    (``match_decided:n1.o1:org:email``, whose ``:`` would cut the header short) are made valid
    without two records ever sharing one (a hash of the whole id keeps them apart)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", ".", delivery_id).strip(".")[:100] or "delivery"
    return f"{readable}.{hashlib.sha256(delivery_id.encode()).hexdigest()[:12]}@ssmatch"


def _normalize_msgid(message_id: str | None) -> str:
    if not message_id:
        return make_msgid(domain="ssmatch")
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") and message_id.endswith(">") else f"<{message_id}>"


def build_message(
    to: str | Sequence[str],
    subject: str,
    text: str,
    html: str | None,
    sender: str,
    message_id: str | None = None,
) -> EmailMessage:
    """A UTF-8 message: text/plain, plus text/html as a multipart/alternative when ``html`` is given.

    ``message_id`` should be derived from the alert's dedup key so a resend has the same id and
    mail clients can collapse duplicates. ``Auto-Submitted: auto-generated`` (RFC 3834) keeps
    auto-responders from replying. Header values with CR/LF are refused by the email package,
    which is what stops header injection through user-supplied titles.
    """
    recipients = [to] if isinstance(to, str) else list(to)
    if not recipients:
        raise ValueError("no recipient")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = " ".join(subject.split())  # one line, whatever the template produced
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = _normalize_msgid(message_id)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Verifying context: system CAs plus ``ca_file``; hostname checking stays on."""
    return ssl.create_default_context(cafile=settings.ca_file)


def _send_blocking(settings: SmtpSettings, message: EmailMessage) -> None:
    smtp: smtplib.SMTP
    if settings.security == "ssl":
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=_tls_context(settings))
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with smtp:
        smtp.ehlo()
        if settings.security == "starttls":
            # starttls() raises SMTPNotSupportedError if the server does not offer it: never
            # silently fall back to plaintext.
            smtp.starttls(context=_tls_context(settings))
            smtp.ehlo()
        if settings.username and settings.password is not None:
            smtp.login(settings.username, settings.password.get_secret_value())
        if "From" not in message:
            message["From"] = settings.sender
        refused = smtp.send_message(message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)


async def send_email(settings: SmtpSettings, message: EmailMessage) -> None:
    """Send ``message`` through the relay in ``settings``; raises ``EmailSendError``.

    Runs blocking ``smtplib`` in a worker thread so the event loop stays free; ``settings.timeout``
    bounds each socket operation.
    """
    try:
        await asyncio.to_thread(_send_blocking, settings, message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        transient = bool(codes) and all(400 <= c < 500 for c in codes)
        raise EmailSendError(
            f"recipients refused: {sorted(exc.recipients)}", transient=transient, smtp_code=codes[0] if codes else None
        ) from exc
    except smtplib.SMTPResponseException as exc:
        code = int(exc.smtp_code)
        raise EmailSendError(f"SMTP {code}: {exc.smtp_error!r}", transient=400 <= code < 500, smtp_code=code) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise EmailSendError(f"SMTP server does not support a required extension: {exc}", transient=False) from exc
    except ssl.SSLCertVerificationError as exc:
        raise EmailSendError(f"TLS certificate rejected: {exc}", transient=False) from exc
    except (smtplib.SMTPException, OSError) as exc:  # connect failures, timeouts, disconnects
        raise EmailSendError(f"{type(exc).__name__}: {exc}", transient=True) from exc
