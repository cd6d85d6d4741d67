"""Webhooks and push: POST the message as JSON to a URL.

The body is ``{"message_key", "outbox_id", "channel", "to", "subject", "text", "html",
"data"}`` (empty fields left out); the ``Idempotency-Key`` header is the message key, so a
receiver can drop a retried delivery. Push goes the same way to a push gateway (your own
service in front of APNs/FCM, or a relay such as ntfy/Gotify): ``to`` is the device token.
A ``secret`` adds ``X-Boomerang-Signature: sha256=<hex HMAC of the body>``. The provider id
is the ``id`` field of a JSON answer when there is one, else the message key. Errors map as
in `_http`: 429/5xx/timeouts -> `TemporaryFailure`, other 4xx -> `PermanentFailure`.

Settings (``{"webhook": {"type": "webhook", ...}}`` or ``{"push": {"type": "push", ...}}``):
``url`` (required unless each message's ``to`` is the URL: ``"url": "to"``), ``headers``
(extra headers), ``bearer`` or ``bearer_env`` (an Authorization bearer token),
``secret`` or ``secret_env``, ``timeout`` (seconds, default 10).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import httpx

from boomerang.campaigns.channels._http import post, secret
from boomerang.campaigns.channels.base import Delivery, Message, PermanentFailure
from boomerang.errors import ConfigError


def payload(message: Message) -> dict[str, object]:
    """The JSON document a webhook receives (also what the file channel writes)."""
    body: dict[str, object] = {
        "message_key": message.message_key,
        "outbox_id": message.outbox_id,
        "channel": message.channel,
        "to": message.to,
    }
    for key in ("subject", "text", "html", "sender"):
        value = getattr(message, key)
        if value:
            body[key] = value
    if message.data:
        body["data"] = message.data
    return body


class WebhookChannel:
    """POSTs each message as JSON; ``name`` is the channel it serves (webhook or push)."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        headers: Mapping[str, str] | None = None,
        bearer: str | None = None,
        signing_secret: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url:
            raise ConfigError(
                f"the {name} channel needs a url",
                hint=f'set {{"{name}": {{"type": "{name}", "url": "https://..."}}}}',
            )
        self.name = name
        self.url = url
        sent = dict(headers or {})
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        self._secret = signing_secret.encode("utf-8") if signing_secret else None
        self._client = httpx.Client(headers=sent, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"WebhookChannel(name={self.name!r}, url={self.url!r})"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], name: str) -> WebhookChannel:
        return cls(
            str(settings.get("url", "")),
            name=name,
            headers={str(k): str(v) for k, v in dict(settings.get("headers") or {}).items()},
            bearer=secret(settings, "bearer", name),
            signing_secret=secret(settings, "secret", name),
            timeout=float(settings.get("timeout", 10.0)),
        )

    def send(self, message: Message) -> Delivery:
        url = message.to if self.url == "to" else self.url
        if not url.startswith(("https://", "http://")):
            raise PermanentFailure(f"not a webhook URL: {url[:80]!r}")
        body = json.dumps(payload(message), separators=(",", ":"), default=str).encode("utf-8")
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.message_key}
        if self._secret is not None:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers["X-Boomerang-Signature"] = f"sha256={digest}"
        response = post(self._client, url, f"{self.name} endpoint", content=body, headers=headers)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("id") is not None:
            return Delivery(provider_id=str(answer["id"]))
        return Delivery(provider_id=message.message_key)

    def close(self) -> None:
        self._client.close()
