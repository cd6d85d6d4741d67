"""A channel that writes each message to a file: the demo and tests need no mail server.

Email becomes ``<dir>/<key>.eml`` (the exact bytes SMTP would carry; open it in any mail
client); SMS, push and webhook messages become ``<dir>/<key>.json`` (the webhook payload).
``<key>`` is the message key with anything but letters, digits, ``.``, ``_`` and ``-``
replaced (plus a short hash when something was replaced, so two keys never share a file).

Writes are atomic (a temporary file in the same directory, fsync'd, then ``os.replace``):
a reader sees the old file or the new one, never half of one. Writing the same message
again leaves the same bytes: an existing .eml's ``Date`` is kept, and an unchanged file is
not rewritten at all.

Settings (``{"email": {"type": "file", "dir": "outbox"}}``, also for sms/push/webhook):
``dir`` (created when missing), ``sender`` (for messages without one), ``fsync`` (default
true).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from boomerang.campaigns import mime
from boomerang.campaigns.channels.base import Delivery, Message, PermanentFailure
from boomerang.campaigns.channels.webhook import payload
from boomerang.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_stem(message_key: str) -> str:
    """A file name for a message key: readable, never a path, unique per key."""
    stem = _UNSAFE.sub("_", message_key).lstrip(".")[:150]
    if stem != message_key or not stem:
        digest = hashlib.blake2b(message_key.encode("utf-8"), digest_size=5).hexdigest()
        stem = f"{stem}.{digest}" if stem else digest
    return stem


def _kept_date(path: Path) -> str | None:
    """The Date header of an .eml we wrote before (so a rewrite is byte-identical)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16384).split(b"\r\n\r\n", 1)[0]
    except FileNotFoundError:
        return None
    for line in head.split(b"\r\n"):
        if line[:5].lower() == b"date:":
            return line[5:].strip().decode("ascii", "replace")
    return None


class FileChannel:
    """Writes the messages of one channel (``name``) into a directory."""

    def __init__(self, directory: str | Path, *, name: str = "email", sender: str = "",
                 fsync: bool = True) -> None:  # fmt: skip
        if not str(directory):
            raise ConfigError(
                f"the file channel for {name} needs a directory",
                hint=f'set {{"{name}": {{"type": "file", "dir": "outbox"}}}}',
            )
        self.name = name
        self.dir = Path(directory)
        self.sender = sender
        self.fsync = fsync
        self.dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileChannel(name={self.name!r}, dir={str(self.dir)!r})"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], name: str) -> FileChannel:
        return cls(
            str(settings.get("dir", "")),
            name=name,
            sender=str(settings.get("sender", "")),
            fsync=bool(settings.get("fsync", True)),
        )

    def path_for(self, message: Message) -> Path:
        suffix = ".eml" if message.channel == "email" else ".json"
        return self.dir / (file_stem(message.message_key) + suffix)

    def send(self, message: Message) -> Delivery:
        path = self.path_for(message)
        if message.channel == "email":
            if not any(k.lower() == "date" for k in message.headers):
                kept = _kept_date(path)
                if kept:
                    message = dataclasses.replace(
                        message, headers={**message.headers, "Date": kept}
                    )
            try:
                built = mime.build(message, sender=self.sender)
            except ValueError as exc:
                raise PermanentFailure(f"cannot build the email: {exc}") from None
            self._write(path, built.data)
            return Delivery(provider_id=built.message_id)
        body = json.dumps(payload(message), ensure_ascii=False, indent=2, sort_keys=True,
                          default=str)  # fmt: skip
        self._write(path, (body + "\n").encode("utf-8"))
        return Delivery(provider_id=f"file:{path.name}")

    def _write(self, path: Path, data: bytes) -> None:
        try:
            if path.read_bytes() == data:
                return
        except FileNotFoundError:
            pass
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def close(self) -> None:
        return None
