"""Delivery channels of the notify service: outbound webhooks and SMTP e-mail.

Thin adapters only. Who gets what, and when, is decided elsewhere (`services.notify.rules`,
`services.notify.preferences`); what the message says is `services.notify.templates`. These modules
only move bytes safely: they sign, guard addresses, time out, retry and report.
"""

from __future__ import annotations

from services.notify.channels.email import EmailSendError, SmtpSettings, build_message, send_email
from services.notify.channels.webhook import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryResult,
    WebhookSender,
    WebhookTarget,
    WebhookURLRejected,
    check_webhook_url,
    resolve_webhook_url,
    sign_payload,
    verify_signature,
)

__all__ = [
    "DELIVERY_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryResult",
    "EmailSendError",
    "SmtpSettings",
    "WebhookSender",
    "WebhookTarget",
    "WebhookURLRejected",
    "build_message",
    "check_webhook_url",
    "resolve_webhook_url",
    "send_email",
    "sign_payload",
    "verify_signature",
]
