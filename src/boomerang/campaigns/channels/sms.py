"""SMS through a Twilio-compatible HTTP API.

``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with the form fields
``To``, ``From`` (or ``MessagingServiceSid``) and ``Body``, HTTP basic auth
(account sid, auth token). The provider id is the ``sid`` of the created message.
Errors map as in `_http`: 429/5xx/timeouts -> `TemporaryFailure`, other 4xx ->
`PermanentFailure` (a bad number, but also a wrong auth token: check the settings when
every SMS dead-letters).

Settings (``{"sms": {"type": "twilio", ...}}``): ``account_sid``, ``auth_token`` or
``auth_token_env``, ``from`` (a number in E.164) or ``messaging_service_sid``,
``base_url`` (default ``https://api.twilio.com``), ``timeout`` (seconds, default 10).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from boomerang.campaigns.channels._http import post, secret
from boomerang.campaigns.channels.base import Delivery, Message, PermanentFailure
from boomerang.errors import ConfigError

DEFAULT_BASE_URL = "https://api.twilio.com"


class TwilioSms:
    """Delivers `Message`s of channel ``sms``: ``to`` is the number, ``text`` the body."""

    name = "sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        sender: str = "",
        messaging_service_sid: str = "",
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not account_sid or not auth_token:
            raise ConfigError(
                "the SMS channel needs account_sid and auth_token",
                hint='set {"sms": {"type": "twilio", "account_sid": ..., "auth_token_env": ...}}',
            )
        if not sender and not messaging_service_sid:
            raise ConfigError(
                "the SMS channel needs a sender number",
                hint="set sms.from (E.164) or sms.messaging_service_sid",
            )
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._client = httpx.Client(
            auth=(account_sid, auth_token), timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"TwilioSms(url={self.url!r})"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TwilioSms:
        return cls(
            str(settings.get("account_sid", "")),
            secret(settings, "auth_token", "sms") or "",
            sender=str(settings.get("from", "")),
            messaging_service_sid=str(settings.get("messaging_service_sid", "")),
            base_url=str(settings.get("base_url", DEFAULT_BASE_URL)),
            timeout=float(settings.get("timeout", 10.0)),
        )

    def send(self, message: Message) -> Delivery:
        body = message.text
        if not message.to or not body:
            raise PermanentFailure("an SMS needs a number and a text body")
        form = {"To": message.to, "Body": body}
        if message.sender or self.sender:
            form["From"] = message.sender or self.sender
        else:
            form["MessagingServiceSid"] = self.messaging_service_sid
        response = post(self._client, self.url, "SMS provider", data=form)
        try:
            sid = response.json()["sid"]
        except (ValueError, KeyError, TypeError):
            # Accepted (2xx) but unreadable: it was sent, so do not retry; keep our key.
            return Delivery(provider_id=f"sms:{message.message_key}")
        return Delivery(provider_id=str(sid))

    def close(self) -> None:
        self._client.close()
