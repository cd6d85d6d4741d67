"""Build a channel from settings: ``channel_for("email", {"email": {"type": "smtp", ...}})``.

The settings dict maps a channel name (``email``, ``sms``, ``push``, ``webhook``) to its
adapter settings; ``type`` picks the adapter:

==========  ===================================  =================================
type        channels                             module
==========  ===================================  =================================
smtp        email                                `channels.smtp`
file        any (email as .eml, others as .json)  `channels.files`
twilio      sms (alias: ``sms``)                 `channels.sms`
webhook     push, webhook (alias: ``push``)      `channels.webhook`
==========  ===================================  =================================

docs/channels.md lists each adapter's keys. Secrets may be given as ``<key>_env``: the name
of an environment variable to read, so settings stored in the database hold no password.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from boomerang.campaigns.channels.base import Channel
from boomerang.errors import ConfigError

CHANNELS = ("email", "sms", "push", "webhook")
_ALLOWED = {
    "smtp": {"email"},
    "file": set(CHANNELS),
    "twilio": {"sms"},
    "sms": {"sms"},
    "webhook": {"push", "webhook"},
    "push": {"push"},
}


def channel_for(name: str, settings: Mapping[str, Any]) -> Channel:
    """The adapter configured for channel ``name`` (a `ConfigError` when there is none)."""
    if name not in CHANNELS:
        raise ConfigError(f"unknown channel {name!r}", hint=f"use one of {', '.join(CHANNELS)}")
    conf = settings.get(name)
    if not isinstance(conf, Mapping):
        raise ConfigError(
            f"no delivery settings for the {name} channel",
            hint=f'add e.g. {{"{name}": {{"type": "file", "dir": "outbox"}}}} to the channel settings',
        )
    kind = str(conf.get("type", ""))
    if kind not in _ALLOWED:
        raise ConfigError(
            f"{name}.type {kind!r} is not a channel type",
            hint=f"use one of {', '.join(sorted(_ALLOWED))}",
        )
    if name not in _ALLOWED[kind]:
        raise ConfigError(
            f"a {kind} adapter cannot deliver {name} messages",
            hint=f"{kind} serves {', '.join(sorted(_ALLOWED[kind]))}",
        )
    # Adapters are imported when configured: an email-only store never loads httpx.
    if kind == "smtp":
        from boomerang.campaigns.channels.smtp import SmtpChannel

        return SmtpChannel.from_settings(conf)
    if kind == "file":
        from boomerang.campaigns.channels.files import FileChannel

        return FileChannel.from_settings(conf, name)
    if kind in ("twilio", "sms"):
        from boomerang.campaigns.channels.sms import TwilioSms

        return TwilioSms.from_settings(conf)
    from boomerang.campaigns.channels.webhook import WebhookChannel

    return WebhookChannel.from_settings(conf, name)
