"""Email over SMTP: one connection reused across messages, reconnected when it drops.

Each message is built by `boomerang.campaigns.mime.build` and sent as one SMTP
transaction (MAIL, RCPT, DATA) on the open connection. Answers map to the channel
contract: a 4xx reply, a timeout or a dropped connection -> `TemporaryFailure`; a 5xx
reply -> `PermanentFailure`. A connection found dead at ``MAIL FROM`` (the server closed
an idle connection) is reopened and the message tried once more, which is safe because
nothing of it was accepted yet; a connection lost later in the transaction is a
`TemporaryFailure` (the dispatcher decides whether to retry a message in doubt). When the
server offers PIPELINING (RFC 2920; Postfix, Exim and the big providers do), MAIL, RCPT
and DATA go in one write: two round trips per message instead of four.

Settings (``{"email": {"type": "smtp", ...}}``): ``host`` (default ``localhost``), ``port``
(25; 465 with ``ssl``), ``sender`` (used when a message has none), ``envelope_from``
(bounce address for MAIL FROM; default the sender's address), ``username``, ``password``
or ``password_env`` (the name of an environment variable holding it), ``starttls``
(bool), ``ssl`` (bool), ``timeout`` (seconds, default 30), ``local_hostname``,
``pipelining`` (default true: used when the server offers it).
Credentials are never logged or shown in errors.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import ssl
from collections.abc import Mapping
from typing import Any

from boomerang.campaigns import mime
from boomerang.campaigns.channels.base import (
    Delivery,
    Message,
    PermanentFailure,
    TemporaryFailure,
)
from boomerang.errors import ConfigError

_DOT_LINE = re.compile(rb"(?m)^\.")  # SMTP dot-stuffing (smtplib does it for data())


def _failure(code: int, what: str, reply: bytes | str) -> Exception:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    detail = f"SMTP {code} at {what}: {text.strip()[:200]}"
    if 400 <= code < 500:
        return TemporaryFailure(detail)
    if 500 <= code < 600:
        return PermanentFailure(detail)
    return TemporaryFailure(detail)  # not a valid reply: assume a broken connection


class SmtpChannel:
    """Delivers `Message`s of channel ``email`` through one SMTP server."""

    name = "email"

    def __init__(
        self,
        host: str = "localhost",
        port: int | None = None,
        *,
        sender: str = "",
        envelope_from: str = "",
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_ssl: bool = False,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        pipelining: bool = True,
    ) -> None:
        self.host = host
        self.port = port if port is not None else (465 if use_ssl else 25)
        self.sender = sender
        self.envelope_from = envelope_from
        self._username = username
        self._password = password
        self.starttls = starttls
        self.use_ssl = use_ssl
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.pipelining = pipelining
        self._conn: smtplib.SMTP | None = None
        self.connections_opened = 0  # how many times we connected (tests, metrics)

    def __repr__(self) -> str:
        return f"SmtpChannel(host={self.host!r}, port={self.port})"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SmtpChannel:
        password = settings.get("password")
        env = settings.get("password_env")
        if password is None and env:
            password = os.environ.get(str(env))
            if password is None:
                raise ConfigError(
                    f"email.password_env names {env}, which is not set",
                    hint=f"export {env}=... before sending",
                )
        port = settings.get("port")
        return cls(
            host=str(settings.get("host", "localhost")),
            port=None if port is None else int(port),
            sender=str(settings.get("sender", "")),
            envelope_from=str(settings.get("envelope_from", "")),
            username=settings.get("username"),
            password=None if password is None else str(password),
            starttls=bool(settings.get("starttls", False)),
            use_ssl=bool(settings.get("ssl", False)),
            timeout=float(settings.get("timeout", 30.0)),
            local_hostname=settings.get("local_hostname"),
            pipelining=bool(settings.get("pipelining", True)),
        )

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        try:
            conn: smtplib.SMTP
            if self.use_ssl:
                conn = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            conn.ehlo_or_helo_if_needed()
            if self.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if self._username:
                conn.login(self._username, self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentFailure(f"SMTP login to {self.host} refused ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            raise _failure(exc.smtp_code, "connect", exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                f"cannot reach SMTP server {self.host}:{self.port}: {type(exc).__name__}"
            ) from None
        self.connections_opened += 1
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    # -- sending ------------------------------------------------------------------------------

    def send(self, message: Message) -> Delivery:
        try:
            built = mime.build(message, sender=self.sender)
        except ValueError as exc:
            raise PermanentFailure(f"cannot build the email: {exc}") from None
        envelope_from = self.envelope_from or built.envelope_from
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            pipelined = self.pipelining and conn.has_extn("pipelining")
            try:
                if pipelined:  # RFC 2920: MAIL, RCPT and DATA in one write, replies in order
                    conn.send(
                        f"MAIL FROM:{smtplib.quoteaddr(envelope_from)}\r\n"
                        f"RCPT TO:{smtplib.quoteaddr(built.recipient)}\r\nDATA\r\n".encode()
                    )
                    code, reply = conn.getreply()
                else:
                    code, reply = conn.mail(envelope_from)
            except (smtplib.SMTPServerDisconnected, OSError):
                code, reply = -1, b"connection lost"
            if code in (-1, 421):
                # The server closed an idle connection (421 is its "closing" notice):
                # nothing of this message was sent yet, so one retry on a new one is safe.
                self._drop()
                if attempt == 1:
                    continue
                if code == -1:
                    raise TemporaryFailure(f"SMTP connection to {self.host} lost")
                raise _failure(code, "MAIL FROM", reply)
            if pipelined:
                return self._finish_pipelined(conn, built, code, reply)
            if code != 250:
                self._reset()
                raise _failure(code, "MAIL FROM", reply)
            return self._finish(conn, built)
        raise TemporaryFailure(f"SMTP connection to {self.host} lost")  # pragma: no cover

    def _finish(self, conn: smtplib.SMTP, built: mime.Built) -> Delivery:
        try:
            code, reply = conn.rcpt(built.recipient)
            if code not in (250, 251):
                self._after_refusal(code)
                raise _failure(code, "RCPT TO", reply)
            code, reply = conn.data(built.data)
        except smtplib.SMTPDataError as exc:  # refused the DATA command itself
            self._after_refusal(exc.smtp_code)
            raise _failure(exc.smtp_code, "DATA", exc.smtp_error) from None
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop()
            raise TemporaryFailure(f"SMTP connection to {self.host} lost mid-message") from None
        if code != 250:
            self._after_refusal(code)
            raise _failure(code, "end of DATA", reply)
        return Delivery(provider_id=built.message_id)

    def _finish_pipelined(
        self, conn: smtplib.SMTP, built: mime.Built, mail_code: int, mail_reply: bytes
    ) -> Delivery:
        try:
            rcpt_code, rcpt_reply = conn.getreply()
            data_code, data_reply = conn.getreply()
            refused = mail_code != 250 or rcpt_code not in (250, 251)
            if data_code == 354 and refused:
                conn.send(b".\r\n")  # end an empty message with no valid recipient
                conn.getreply()
            if mail_code != 250:
                self._after_refusal(mail_code)
                raise _failure(mail_code, "MAIL FROM", mail_reply)
            if rcpt_code not in (250, 251):
                self._after_refusal(rcpt_code)
                raise _failure(rcpt_code, "RCPT TO", rcpt_reply)
            if data_code != 354:
                self._after_refusal(data_code)
                raise _failure(data_code, "DATA", data_reply)
            conn.send(_DOT_LINE.sub(b"..", built.data) + b".\r\n")
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop()
            raise TemporaryFailure(f"SMTP connection to {self.host} lost mid-message") from None
        if code != 250:
            self._after_refusal(code)
            raise _failure(code, "end of DATA", reply)
        return Delivery(provider_id=built.message_id)

    def _after_refusal(self, code: int) -> None:
        if code == 421:
            self._drop()
        else:
            self._reset()

    def _reset(self) -> None:
        """RSET after a refused transaction, so the connection serves the next message."""
        if self._conn is None:
            return
        try:
            code, _ = self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()
            return
        if code != 250:
            self._drop()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            with contextlib.suppress(OSError):
                conn.close()
