"""The RFC 5322 bytes of one message, built directly (no ``email.message`` object tree).

The stdlib's `EmailMessage` manages about 200 messages/s and `MIMEMultipart` about 750/s
(the policy machinery, header registry and generator dominate), which caps a send loop;
this builder writes the same structure by hand, an order of magnitude faster
(bench/mime_bench.py), and `tests/campaigns/test_mime_build.py` parses every shape back
with ``email.parser.BytesParser(policy=email.policy.default)``.

What it writes:

- ``From``, ``To``, ``Subject``, ``Date``, ``Message-ID``, ``MIME-Version``, then the
  message's own headers (``List-Unsubscribe``, ``List-Unsubscribe-Post``, ...). A message
  header named like one of the first five replaces it (a caller may pin ``Date`` or
  ``Message-ID``); the MIME structure headers cannot be overridden.
- Non-ASCII header text as RFC 2047 encoded words (UTF-8, base64); long ASCII values
  folded at spaces; CR/LF in values become spaces (no header injection).
- ``multipart/alternative`` with a text and an HTML part (one part alone when the other is
  empty). A part that is ASCII without control characters and with lines of at most 998
  octets goes as ``7bit``; anything else as UTF-8 in ``base64`` (76-column lines): about 3x
  cheaper to produce than quoted-printable with `binascii`, safe through any relay (no
  8BITMIME needed), and the boundary (``=_bm_...``) can never occur in it.
- CRLF line endings throughout, ready for ``smtplib.SMTP.sendmail`` (which dot-stuffs).
- ``Message-ID`` derived from the message key and the sender's domain: the same message
  built twice (a retry) keeps its id, and so does the MIME boundary.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import time
from dataclasses import dataclass
from email.utils import formatdate, parseaddr
from functools import lru_cache

from boomerang.campaigns.channels.base import Message

CRLF = "\r\n"
MAX_LINE = 998
_FOLD_AT = 76
_B64_LINE = 76
_WORD_BYTES = 45  # UTF-8 bytes per encoded word: 60 base64 chars + 12 of syntax <= 75
_STRUCTURE = frozenset({"mime-version", "content-type", "content-transfer-encoding"})
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # not allowed in a 7bit body (CR is gone)


@dataclass(frozen=True, slots=True)
class Built:
    """A message ready for SMTP: envelope addresses, its Message-ID and the bytes."""

    envelope_from: str
    recipient: str
    message_id: str
    data: bytes


def list_unsubscribe_headers(url: str, mailto: str | None = None) -> dict[str, str]:
    """``List-Unsubscribe`` (RFC 2369) and, for an HTTPS URL, ``List-Unsubscribe-Post``
    (RFC 8058 one-click; it requires HTTPS, so an http URL gets the first header only)."""
    targets = [f"<{url}>"]
    if mailto:
        targets.append(f"<mailto:{mailto}>")
    headers = {"List-Unsubscribe": ", ".join(targets)}
    if url[:8].lower() == "https://":
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


# -- headers ----------------------------------------------------------------------------------


def _encoded_words(value: str) -> str:
    """RFC 2047 ``=?utf-8?b?...?=`` words, split between characters, folded."""
    raw = value.encode("utf-8")
    words: list[str] = []
    start, end = 0, len(raw)
    while start < end:
        cut = min(start + _WORD_BYTES, end)
        while cut < end and raw[cut] & 0xC0 == 0x80:  # never split a character
            cut -= 1
        words.append(
            "=?utf-8?b?" + binascii.b2a_base64(raw[start:cut], newline=False).decode() + "?="
        )
        start = cut
    return (CRLF + " ").join(words) if words else ""


def _fold(name: str, value: str) -> str:
    """Fold an ASCII value at spaces so lines stay near 78 columns (never over 998)."""
    if len(name) + 2 + len(value) <= 78:
        return value
    lines: list[str] = []
    line = ""
    budget = _FOLD_AT - len(name) - 2
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > budget:
            lines.append(line)
            line, budget = word, _FOLD_AT - 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    if any(len(part) > MAX_LINE - 2 - len(name) for part in lines):
        raise ValueError(f"header {name} has a word longer than {MAX_LINE} characters")
    return (CRLF + " ").join(lines)


def _header_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        value = _NEWLINES.sub(" ", value)
    if value.isascii() and "=?" not in value:  # text like an encoded word is encoded too
        return _fold(name, value)
    return _encoded_words(value)


@lru_cache(maxsize=4096)
def _address(value: str) -> tuple[str, str]:
    """(header text, bare address) of ``addr`` or ``Name <addr>``; IDN domains to punycode."""
    value = _NEWLINES.sub(" ", value).strip()
    if value.isascii() and not any(ch in value for ch in ' <>"(),;:'):
        if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
            raise ValueError(f"not an email address: {value!r}")
        return value, value
    name, addr = parseaddr(value)
    if not addr or "@" not in addr:
        raise ValueError(f"not an email address: {value!r}")
    if not addr.isascii():
        local, _, domain = addr.rpartition("@")
        if not local.isascii():
            raise ValueError(f"a non-ASCII mailbox needs SMTPUTF8, not supported: {addr!r}")
        addr = f"{local}@{domain.encode('idna').decode('ascii')}"
    if not name:
        return addr, addr
    if name.isascii():
        if re.search(r'[()<>\[\]:;@\\,."]', name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{addr}>", addr
    return f"{_encoded_words(name)} <{addr}>", addr


@lru_cache(maxsize=1)
def _date_for(second: int) -> str:
    return formatdate(second, usegmt=True).replace("GMT", "+0000")


def _digest(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=6).hexdigest()


def message_id(message_key: str, domain: str) -> str:
    """A stable ``<...@domain>`` id for a message key."""
    local = _ID_UNSAFE.sub("-", message_key).strip("-")[:64] or "m"
    return f"<{local}.{_digest(message_key)}@{domain}>"


# -- bodies -----------------------------------------------------------------------------------


def _part(content: str, boundary: str) -> tuple[bytes, str]:
    """The encoded body (CRLF, ending in CRLF) and its transfer encoding."""
    if "\r" in content:
        content = content.replace("\r\n", "\n").replace("\r", "\n")
    if content and not content.endswith("\n"):
        content += "\n"
    if (
        content.isascii()
        and not _CONTROL.search(content)
        and (len(content) <= MAX_LINE or max(map(len, content.split("\n"))) <= MAX_LINE)
        and boundary not in content
    ):
        return content.replace("\n", CRLF).encode("ascii"), "7bit"
    encoded = binascii.b2a_base64(content.replace("\n", CRLF).encode("utf-8"), newline=False)
    lines = [encoded[i : i + _B64_LINE] for i in range(0, len(encoded), _B64_LINE)]
    lines.append(b"")
    return b"\r\n".join(lines), "base64"


def _single(kind: str, content: str, boundary: str) -> tuple[str, bytes]:
    body, cte = _part(content, boundary)
    return (
        f"Content-Type: text/{kind}; charset=utf-8{CRLF}Content-Transfer-Encoding: {cte}",
        body,
    )


def build(message: Message, *, sender: str = "", unsubscribe_url: str | None = None) -> Built:
    """The message as SMTP-ready bytes. ``sender`` is used when the message has none;
    ``unsubscribe_url`` adds the List-Unsubscribe headers (see `list_unsubscribe_headers`)."""
    from_header, from_addr = _address(message.sender or sender)
    to_header, to_addr = _address(message.to)
    domain = from_addr.rpartition("@")[2] or "boomerang.invalid"
    boundary = f"=_bm_{_digest(message.message_key)}"
    fields: dict[str, list[str]] = {
        "from": ["From", from_header],
        "to": ["To", to_header],
        "subject": ["Subject", _header_value("Subject", message.subject)],
        "date": ["Date", _date_for(int(time.time()))],
        "message-id": ["Message-ID", message_id(message.message_key, domain)],
    }
    extra = dict(list_unsubscribe_headers(unsubscribe_url)) if unsubscribe_url else {}
    extra.update(message.headers)
    tail: list[str] = []
    for name, value in extra.items():
        low = name.lower()
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"not a header name: {name!r}")
        if low in _STRUCTURE:
            raise ValueError(f"header {name} is set by the MIME builder")
        if low in ("from", "to"):
            fields[low][1] = _address(value)[0]
        elif low in fields:
            fields[low][1] = _header_value(name, value)
        else:
            tail.append(f"{name}: {_header_value(name, value)}")
    head = [f"{n}: {v}" for n, v in fields.values()]
    head.append("MIME-Version: 1.0")
    head += tail
    if message.html and message.text:
        text_body, text_cte = _part(message.text, boundary)
        html_body, html_cte = _part(message.html, boundary)
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        data = b"".join(
            (
                (CRLF.join(head) + CRLF + CRLF).encode("ascii"),
                f"--{boundary}{CRLF}Content-Type: text/plain; charset=utf-8{CRLF}"
                f"Content-Transfer-Encoding: {text_cte}{CRLF}{CRLF}".encode("ascii"),
                text_body,
                f"{CRLF}--{boundary}{CRLF}Content-Type: text/html; charset=utf-8{CRLF}"
                f"Content-Transfer-Encoding: {html_cte}{CRLF}{CRLF}".encode("ascii"),
                html_body,
                f"{CRLF}--{boundary}--{CRLF}".encode("ascii"),
            )
        )
    else:
        content_headers, body = _single(
            "html" if message.html else "plain", message.html or message.text, boundary
        )
        head.append(content_headers)
        data = (CRLF.join(head) + CRLF + CRLF).encode("ascii") + body
    return Built(from_addr, to_addr, fields["message-id"][1], data)
