"""What the HTTP channels (SMS, webhook, push) share: one httpx client and the error mapping.

HTTP 2xx -> delivered; 408, 425, 429 and 5xx, a timeout or a connection error ->
`TemporaryFailure`; any other 4xx (and a 3xx, which we never follow) -> `PermanentFailure`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from boomerang.campaigns.channels.base import PermanentFailure, TemporaryFailure
from boomerang.errors import ConfigError

RETRYABLE = frozenset({408, 425, 429})


def secret(settings: Mapping[str, Any], key: str, channel: str) -> str | None:
    """``settings[key]``, else the environment variable named by ``settings[key + '_env']``."""
    value = settings.get(key)
    if value is not None:
        return str(value)
    env = settings.get(f"{key}_env")
    if not env:
        return None
    found = os.environ.get(str(env))
    if found is None:
        raise ConfigError(
            f"{channel}.{key}_env names {env}, which is not set",
            hint=f"export {env}=... before sending",
        )
    return found


def post(client: httpx.Client, url: str, what: str, **kwargs: Any) -> httpx.Response:
    """POST and map the outcome onto the channel contract (the response when 2xx)."""
    try:
        response = client.post(url, **kwargs)
    except httpx.TimeoutException:
        raise TemporaryFailure(f"{what}: timed out") from None
    except httpx.TransportError as exc:
        raise TemporaryFailure(f"{what}: {type(exc).__name__}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    detail = f"{what}: HTTP {status} {response.text[:200].strip()}"
    if status in RETRYABLE or status >= 500:
        raise TemporaryFailure(detail)
    raise PermanentFailure(detail)
