"""Signed opaque tokens for the links in a message: unsubscribe, preferences, open pixel, click.

A token is the URL-safe base64 (no padding) of ``payload || mac``:

- ``payload``: a version byte, the purpose (``u`` unsubscribe, ``p`` preferences, ``o``
  open, ``c`` click), then the store id, outbox id and customer id as unsigned varints, and
  for a click the UTF-8 target URL;
- ``mac``: the first 16 bytes of HMAC-SHA256 over a domain tag and the payload, keyed with
  the store's 32-byte signing key (kept in ``campaign_settings.config["signing_key"]``).

The store id is read before the MAC is checked (it names the key); nothing is trusted until
`Signer.verify` succeeded. A token carries ids, never the email address or phone number.
Anything that does not verify (cut short, tampered, signed by another store or database,
used for another purpose) raises `InvalidToken`, a `NotFoundError`: the web app answers 404.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from boomerang.errors import NotFoundError

VERSION = 1
MAC_BYTES = 16
KEY_BYTES = 32
MAX_URL_BYTES = 4000
_TAG = b"boomerang.campaigns.token\x00"


class Purpose(StrEnum):
    UNSUBSCRIBE = "u"
    PREFERENCES = "p"
    OPEN = "o"
    CLICK = "c"


class InvalidToken(NotFoundError):
    """A link token that does not verify; the page behind it does not exist for the caller."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"this link is not valid ({why})",
            hint="open the link from the message again; it may have been cut short",
        )


@dataclass(frozen=True, slots=True)
class TokenData:
    store_id: int
    outbox_id: int
    customer_id: int
    purpose: Purpose
    url: str | None = None  # the signed click target


def new_key() -> bytes:
    """A fresh random signing key."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    key = base64.urlsafe_b64decode(text.encode("ascii"))
    if len(key) != KEY_BYTES:
        raise ValueError("a signing key has 32 bytes")
    return key


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("ids in tokens are non-negative")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise InvalidToken("truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _b64decode(token: str) -> bytes:
    if not token or len(token) > 8000:
        raise InvalidToken("malformed")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidToken("malformed") from None


def _parse(raw: bytes) -> TokenData:
    payload = raw[:-MAC_BYTES]
    if len(payload) < 5 or payload[0] != VERSION:
        raise InvalidToken("unknown format")
    try:
        purpose = Purpose(chr(payload[1]))
    except ValueError:
        raise InvalidToken("unknown purpose") from None
    store_id, pos = _read_varint(payload, 2)
    outbox_id, pos = _read_varint(payload, pos)
    customer_id, pos = _read_varint(payload, pos)
    url: str | None = None
    if purpose is Purpose.CLICK:
        try:
            url = payload[pos:].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidToken("malformed") from None
    elif pos != len(payload):
        raise InvalidToken("malformed")
    return TokenData(store_id, outbox_id, customer_id, purpose, url)


def peek_store(token: str) -> int:
    """The store id a token claims, unverified: only to find the key to verify it with."""
    raw = _b64decode(token)
    if len(raw) <= MAC_BYTES:
        raise InvalidToken("truncated")
    return _parse(raw).store_id


class Signer:
    """Signs and verifies one store's tokens. Its repr never shows the key."""

    __slots__ = ("_key", "store_id")

    def __init__(self, store_id: int, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a signing key has 32 bytes")
        self.store_id = store_id
        self._key = key

    def __repr__(self) -> str:
        return f"Signer(store_id={self.store_id})"

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _TAG + payload, hashlib.sha256).digest()[:MAC_BYTES]

    def sign(
        self, purpose: Purpose, outbox_id: int, customer_id: int, url: str | None = None
    ) -> str:
        """A token for one message, customer and purpose (a click also signs its target)."""
        payload = (
            bytes((VERSION, ord(purpose.value)))
            + _varint(self.store_id)
            + _varint(outbox_id)
            + _varint(customer_id)
        )
        if purpose is Purpose.CLICK:
            if url is None:
                raise ValueError("a click token needs its target URL")
            check_target(url)
            payload += url.encode("utf-8")
        elif url is not None:
            raise ValueError("only click tokens carry a URL")
        raw = payload + self._mac(payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def verify(self, token: str, purpose: Purpose) -> TokenData:
        """The token's contents when it is this store's and made for ``purpose``."""
        raw = _b64decode(token)
        if len(raw) <= MAC_BYTES:
            raise InvalidToken("truncated")
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidToken("bad signature")
        data = _parse(raw)
        if data.store_id != self.store_id:
            raise InvalidToken("another store")
        if data.purpose is not purpose:
            raise InvalidToken("made for another page")
        return data


def check_target(url: str) -> None:
    """A click target must be an absolute http(s) URL without control characters."""
    if len(url.encode("utf-8")) > MAX_URL_BYTES:
        raise ValueError("click target longer than 4000 bytes")
    lower = url[:8].lower()
    if not (lower.startswith("https://") or lower.startswith("http://")):
        raise ValueError(f"click target must be an http(s) URL: {url[:80]!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("click target contains control characters")
    host = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not host or "\\" in host:
        raise ValueError(f"click target has no host: {url[:80]!r}")
