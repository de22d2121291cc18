"""E-mail against a real SMTP server (aiosmtpd) on a free loopback port: what arrives, not what was called.

TLS cases use a throw-away self-signed certificate for 127.0.0.1 made with the `openssl` command
(present wherever `ca-certificates` is installed, including the python:3.11-slim image).
"""

from __future__ import annotations

import email
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from services.notify.channels.email import EmailSendError, SmtpSettings, build_message, send_email
from services.notify.templates import render

SENDER = "South-South Match <notifications@ssmatch.example.org>"
USER, PASSWORD = "notify", "s3cret-pass"

APPROVED = {
    "role": "offer", "need_title": "Systèmes semenciers résistants à la sécheresse",
    "offer_title": "Formation à la multiplication des semences",
    "counterpart_organization": "Ministère de l’Agriculture du Sénégal",
    "counterpart_contact_name": "Awa Ndiaye", "counterpart_contact_email": "awa.ndiaye@agri.example",
    "explanation": {"components": {"sectors": 0.5, "sdgs": 0.3}, "reasons": ["shared sectors: agriculture"]},
}


@dataclass
class Inbox:
    """The server side: what was received, with the session's TLS and login state at DATA time."""

    messages: list[tuple[Envelope, EmailMessage, dict[str, Any]]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=default_policy)
        login = getattr(session.auth_data, "login", None)
        state = {"tls": session.ssl is not None, "login": login, "raw": raw}
        self.messages.append((envelope, parsed, state))
        return "250 Message accepted for delivery"


def authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("smtp-tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return crt, key


def _server_tls(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, cert))
    return context


@dataclass
class Server:
    inbox: Inbox
    port: int


def _run(controller_kw: dict[str, Any]) -> Iterator[Server]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=5, **controller_kw)
    controller.start()
    try:
        yield Server(inbox, port)
    finally:
        controller.stop()


@pytest.fixture
def plain_server() -> Iterator[Server]:
    yield from _run({})


@pytest.fixture
def starttls_server(cert: tuple[Path, Path]) -> Iterator[Server]:
    yield from _run(dict(tls_context=_server_tls(cert), require_starttls=True, authenticator=authenticator,
                         auth_require_tls=True, auth_required=True))


@pytest.fixture
def ssl_server(cert: tuple[Path, Path]) -> Iterator[Server]:
    # Implicit TLS: the whole connection is TLS, so AUTH may be offered without STARTTLS.
    yield from _run(dict(ssl_context=_server_tls(cert), authenticator=authenticator, auth_require_tls=False))


def plain_settings(port: int, **kw: Any) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, security="none", sender=SENDER, timeout=5, **kw)


async def test_multipart_french_introduction_arrives_intact(plain_server: Server) -> None:
    rendered = render("match_approved", "fr", APPROVED)
    msg = build_message("contact@embrapa.example", rendered.subject, rendered.text, rendered.html, SENDER,
                        "match_decided.n1.o1.org2@ssmatch")
    await send_email(plain_settings(plain_server.port), msg)

    [(envelope, got, state)] = plain_server.inbox.messages
    assert envelope.mail_from == "notifications@ssmatch.example.org"
    assert envelope.rcpt_tos == ["contact@embrapa.example"]
    assert got["Subject"] == rendered.subject
    assert "é" in got["Subject"] and "Systèmes semenciers" in got["Subject"]
    assert got["From"] == SENDER and got["To"] == "contact@embrapa.example"
    assert got["Message-ID"] == "<match_decided.n1.o1.org2@ssmatch>"
    assert got["Auto-Submitted"] == "auto-generated" and got["Date"]
    assert got.get_content_type() == "multipart/alternative"
    text_part, html_part = list(got.iter_parts())
    assert text_part.get_content_type() == "text/plain" and text_part.get_content_charset() == "utf-8"
    assert html_part.get_content_type() == "text/html" and html_part.get_content_charset() == "utf-8"
    # MIME text travels with CRLF line ends; the content is otherwise exactly what was rendered.
    assert text_part.get_content().replace("\r\n", "\n") == rendered.text
    assert html_part.get_content().replace("\r\n", "\n").rstrip("\n") == rendered.html.rstrip("\n")
    assert "Awa Ndiaye" in text_part.get_content() and "Ministère de l’Agriculture du Sénégal" in text_part.get_content()
    assert "Ministère de l’Agriculture du Sénégal" in html_part.get_content()
    state["raw"].decode("ascii")  # 7-bit clean on the wire: any relay can carry it
    assert not state["tls"] and state["login"] is None


async def test_spanish_digest_subject_and_several_recipients(plain_server: Server) -> None:
    match = {"need_title": "Gestión del agua en zonas áridas", "offer_title": "Riego por goteo — capacitación", "score": 0.74}
    rendered = render("digest", "es", {"matches": [match, {**match, "need_title": "Pesca artesanal", "score": 0.61}]})
    msg = build_message(["a@ministerio.example", "b@ministerio.example"], rendered.subject, rendered.text,
                        rendered.html, SENDER, "digest.org1.2026-03-10T08@ssmatch")
    await send_email(plain_settings(plain_server.port), msg)
    [(envelope, got, _)] = plain_server.inbox.messages
    assert envelope.rcpt_tos == ["a@ministerio.example", "b@ministerio.example"]
    assert got["Subject"] == "Resumen de South-South Match: 2 coincidencias propuestas" == rendered.subject
    text_part, html_part = got.get_body(preferencelist=("plain",)), got.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert "Gestión del agua en zonas áridas" in text and "Pesca artesanal" in text
    assert html.count("<li") == 2 and "Riego por goteo — capacitación" in html


async def test_non_ascii_subject_is_encoded_on_the_wire(plain_server: Server) -> None:
    rendered = render("expiry_reminder", "es", {"item_kind": "offer", "item_title": "Niñez y educación", "days": 3})
    await send_email(plain_settings(plain_server.port),
                     build_message("x@y.example", rendered.subject, rendered.text, None, SENDER, "r1@ssmatch"))
    [(_, got, state)] = plain_server.inbox.messages
    assert got["Subject"] == "Recordatorio: su oferta «Niñez y educación» vence en 3 días"
    assert b"=?utf-8?" in state["raw"]  # RFC 2047 encoded-word
    assert got.get_content_type() == "text/plain"  # no HTML given: a single part


async def test_starttls_with_login(starttls_server: Server, cert: tuple[Path, Path]) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=starttls_server.port, security="starttls", username=USER,
                            password=PASSWORD, sender=SENDER, ca_file=str(cert[0]), timeout=5)
    await send_email(settings, build_message("x@y.example", "Hello", "Body", "<p>Body</p>", SENDER, "s1@ssmatch"))
    [(_, got, state)] = starttls_server.inbox.messages
    assert state["tls"] and state["login"] == USER.encode()
    assert got["Subject"] == "Hello"


async def test_implicit_tls_with_login(ssl_server: Server, cert: tuple[Path, Path]) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=ssl_server.port, security="ssl", username=USER,
                            password=PASSWORD, sender=SENDER, ca_file=str(cert[0]), timeout=5)
    await send_email(settings, build_message("x@y.example", "Über TLS", "Body", None, SENDER, "t1@ssmatch"))
    [(_, got, state)] = ssl_server.inbox.messages
    assert state["login"] == USER.encode() and got["Subject"] == "Über TLS"


async def test_wrong_password_is_a_permanent_failure(starttls_server: Server, cert: tuple[Path, Path]) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=starttls_server.port, security="starttls", username=USER,
                            password="wrong", sender=SENDER, ca_file=str(cert[0]), timeout=5)
    with pytest.raises(EmailSendError) as info:
        await send_email(settings, build_message("x@y.example", "s", "t", None, SENDER, "w1@ssmatch"))
    assert not info.value.transient and info.value.smtp_code == 535
    assert starttls_server.inbox.messages == []


async def test_untrusted_certificate_is_refused(starttls_server: Server) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=starttls_server.port, security="starttls", username=USER,
                            password=PASSWORD, sender=SENDER, timeout=5)  # no ca_file: self-signed is not trusted
    with pytest.raises(EmailSendError, match="certificate") as info:
        await send_email(settings, build_message("x@y.example", "s", "t", None, SENDER, "c1@ssmatch"))
    assert not info.value.transient
    assert starttls_server.inbox.messages == []


async def test_starttls_is_never_silently_skipped(plain_server: Server) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=plain_server.port, security="starttls", sender=SENDER, timeout=5)
    with pytest.raises(EmailSendError) as info:
        await send_email(settings, build_message("x@y.example", "s", "t", None, SENDER, "n1@ssmatch"))
    assert not info.value.transient
    assert plain_server.inbox.messages == []


@pytest.mark.parametrize(("reply", "transient"), [("550 5.1.1 No such user", False), ("451 4.3.0 Try again later", True)])
async def test_refused_recipients_are_classified(plain_server: Server, reply: str, transient: bool) -> None:
    plain_server.inbox.refuse["nobody@y.example"] = reply
    with pytest.raises(EmailSendError) as info:
        await send_email(plain_settings(plain_server.port),
                         build_message("nobody@y.example", "s", "t", None, SENDER, "r2@ssmatch"))
    assert info.value.transient is transient
    assert info.value.smtp_code == int(reply[:3])


async def test_unreachable_relay_is_transient() -> None:
    with pytest.raises(EmailSendError) as info:
        await send_email(plain_settings(free_port()), build_message("x@y.example", "s", "t", None, SENDER, "u1@ssmatch"))
    assert info.value.transient


def test_settings_refuse_credentials_without_tls_and_hide_the_password() -> None:
    with pytest.raises(ValidationError, match="without TLS"):
        SmtpSettings(host="smtp.example", port=25, security="none", username=USER, password=PASSWORD, sender=SENDER)
    with pytest.raises(ValidationError, match="go together"):
        SmtpSettings(host="smtp.example", username=USER, sender=SENDER)
    settings = SmtpSettings(host="smtp.example", username=USER, password=PASSWORD, sender=SENDER)
    assert settings.port == 587 and settings.security == "starttls"
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())


def test_header_injection_through_addresses_is_refused() -> None:
    with pytest.raises(ValueError):
        build_message("a@b.example\r\nBcc: victim@c.example", "s", "t", None, SENDER, "h1@ssmatch")
    msg = build_message("a@b.example", "Seeds\r\nBcc: victim@c.example", "t", None, SENDER, "h2@ssmatch")
    assert msg["Bcc"] is None and "\n" not in str(msg["Subject"])
