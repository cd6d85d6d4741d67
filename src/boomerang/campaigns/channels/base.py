"""What every channel takes and what it may answer: the contract between the dispatcher
and a delivery adapter.

A channel either returns a `Delivery` (accepted by the provider), raises
`TemporaryFailure` (try again later: 4xx SMTP, HTTP 429/5xx, a dropped connection before
the provider answered) or `PermanentFailure` (never retry: 5xx SMTP, HTTP 4xx). It does
not decide whether to send: the arbiter did that already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """One rendered message, ready to deliver."""

    outbox_id: int
    message_key: str  # unique per (flow run, step): providers may use it to deduplicate
    channel: str  # email | sms | push | webhook
    to: str  # email address, phone number (E.164), device token or URL
    subject: str = ""
    html: str = ""
    text: str = ""
    sender: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe
    data: dict[str, object] = field(default_factory=dict)  # push/webhook payload


@dataclass(frozen=True)
class Delivery:
    provider_id: str  # the provider's message id (SMTP queue id, SMS sid), or ours


class TemporaryFailure(Exception):
    """Not delivered; retrying later may work."""


class PermanentFailure(Exception):
    """Not delivered and never will be (bad address, rejected): dead-letter it."""


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> Delivery: ...

    def close(self) -> None: ...
