"""Delivery adapters against real local servers: SMTP to an aiosmtpd sink, SMS and webhook
to an ``http.server`` in a thread; the file channel on a temporary directory.

- SMTP: List-Unsubscribe + List-Unsubscribe-Post arrive as sent; 50 messages share one
  connection; a recipient refused with 550 -> PermanentFailure, 451 -> TemporaryFailure,
  and the connection keeps serving the next message; a server restart (dropped connection)
  is survived by reconnecting; no server -> TemporaryFailure.
- SMS (Twilio-compatible): form fields, basic auth, the returned sid; 429/5xx/timeout ->
  TemporaryFailure, 4xx -> PermanentFailure.
- Webhook/push: JSON body, Idempotency-Key, bearer auth, HMAC signature; error mapping.
- Files: .eml/.json written atomically, rewriting the same key gives the same bytes.
- `channel_for` builds each adapter from settings and refuses bad settings clearly.
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from boomerang.campaigns.channels.base import Message, PermanentFailure, TemporaryFailure
from boomerang.campaigns.channels.files import FileChannel, file_stem
from boomerang.campaigns.channels.registry import channel_for
from boomerang.campaigns.channels.sms import TwilioSms
from boomerang.campaigns.channels.smtp import SmtpChannel
from boomerang.campaigns.channels.webhook import WebhookChannel
from boomerang.errors import ConfigError

UNSUB = "https://links.shop.example/u/AbC123"


def email_message(i: int = 0, to: str | None = None, **extra: Any) -> Message:
    fields: dict[str, Any] = {
        "outbox_id": i,
        "message_key": f"run:{i}:step:welcome",
        "channel": "email",
        "to": to or f"customer{i}@example.com",
        "subject": f"Hello {i} — Grüße",
        "html": f"<p>Hi customer {i}</p>",
        "text": f"Hi customer {i}",
        "headers": {
            "List-Unsubscribe": f"<{UNSUB}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    fields.update(extra)
    return Message(**fields)


# -- SMTP ---------------------------------------------------------------------------------------


class Sink:
    """An aiosmtpd handler: keeps what it accepts, refuses some recipients."""

    def __init__(self, pipelining: bool = False) -> None:
        self.pipelining = pipelining
        self.received: list[tuple[str, list[str], bytes, tuple[str, int]]] = []
        self.mail_421 = 0
        self.refuse = {"gone@example.com": "550 5.1.1 No such user", "busy@example.com": "451 4.3.0 Try later"}  # fmt: skip

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        session.host_name = hostname
        if self.pipelining:  # aiosmtpd reads commands in order, so it copes with pipelining
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_421:
            self.mail_421 -= 1
            return "421 4.3.2 Service shutting down"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), data, session.peer))
        return "250 Message accepted"


class EphemeralController(Controller):
    """A Controller on port 0: the OS picks a free port, read back before the first use."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def smtp_sink(request: pytest.FixtureRequest) -> Iterator[tuple[Sink, EphemeralController]]:
    sink = Sink(pipelining=request.param)
    controller = EphemeralController(sink, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield sink, controller
    finally:
        with contextlib.suppress(AssertionError):  # a test may have stopped it already
            controller.stop()


def parse(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def test_smtp_sends_list_unsubscribe_headers_over_one_connection(
    smtp_sink: tuple[Sink, EphemeralController],
) -> None:
    sink, controller = smtp_sink
    channel = SmtpChannel("127.0.0.1", controller.port, sender="Shop <hello@shop.example>")
    try:
        deliveries = [channel.send(email_message(i)) for i in range(50)]
        assert channel._conn is not None
        assert channel._conn.has_extn("pipelining") == sink.pipelining
    finally:
        channel.close()
    assert len(sink.received) == 50
    assert channel.connections_opened == 1
    assert len({peer for *_, peer in sink.received}) == 1  # one client socket for all 50
    mail_from, rcpts, data, _ = sink.received[7]
    assert (mail_from, rcpts) == ("hello@shop.example", ["customer7@example.com"])
    msg = parse(data)
    assert msg["List-Unsubscribe"] == f"<{UNSUB}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Subject"] == "Hello 7 — Grüße"
    assert msg["Message-ID"] == deliveries[7].provider_id
    assert len(set(d.provider_id for d in deliveries)) == 50
    dotted = email_message(99, text=".\n..leading dots\n.", html="")
    channel.send(dotted)
    channel.close()
    assert parse(sink.received[-1][2]).get_content() == ".\r\n..leading dots\r\n.\r\n"


def test_smtp_maps_refusals_and_keeps_the_connection(
    smtp_sink: tuple[Sink, EphemeralController],
) -> None:
    sink, controller = smtp_sink
    channel = SmtpChannel("127.0.0.1", controller.port, sender="hello@shop.example")
    try:
        channel.send(email_message(1))
        with pytest.raises(PermanentFailure, match="550"):
            channel.send(email_message(2, to="gone@example.com"))
        with pytest.raises(TemporaryFailure, match="451"):
            channel.send(email_message(3, to="busy@example.com"))
        channel.send(email_message(4))
    finally:
        channel.close()
    assert [r[1] for r in sink.received] == [["customer1@example.com"], ["customer4@example.com"]]
    assert channel.connections_opened == 1


def test_smtp_reconnects_after_the_server_dropped_the_connection(
    smtp_sink: tuple[Sink, EphemeralController],
) -> None:
    sink, controller = smtp_sink
    channel = SmtpChannel("127.0.0.1", controller.port, sender="hello@shop.example", timeout=5)
    try:
        channel.send(email_message(1))
        controller.stop()  # closes the server and its connections
        with pytest.raises(TemporaryFailure, match="cannot reach"):
            channel.send(email_message(2))  # stale connection dropped, no server to reconnect
        restarted = EphemeralController(sink, hostname="127.0.0.1", port=controller.port)
        restarted.start()
        try:
            channel.send(email_message(3))
        finally:
            restarted.stop()
    finally:
        channel.close()
    assert [r[1] for r in sink.received] == [["customer1@example.com"], ["customer3@example.com"]]
    assert channel.connections_opened == 2


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_smtp_idle_timeout_of_the_server_is_retried_transparently(pipelining: bool) -> None:
    sink = Sink(pipelining)
    controller = EphemeralController(sink, hostname="127.0.0.1", port=0, timeout=0.3)
    controller.start()
    channel = SmtpChannel("127.0.0.1", controller.port, sender="hello@shop.example")
    try:
        channel.send(email_message(1))
        time.sleep(0.8)  # the server says "421 timeout" and closes the idle connection
        channel.send(email_message(2))
        assert channel._conn is not None
        channel._conn.close()  # the socket is gone altogether
        channel.send(email_message(3))
        sink.mail_421 = 1  # "closing" at MAIL FROM: nothing was accepted, retry once
        channel.send(email_message(4))
        sink.mail_421 = 2  # twice in a row: give up for now
        with pytest.raises(TemporaryFailure, match="421"):
            channel.send(email_message(5))
    finally:
        channel.close()
        controller.stop()
    assert [r[1] for r in sink.received] == [[f"customer{i}@example.com"] for i in (1, 2, 3, 4)]
    assert channel.connections_opened == 5  # 1, idle drop, closed socket, 421, 421


def test_smtp_without_a_server_is_temporary() -> None:
    channel = SmtpChannel("127.0.0.1", 1, sender="hello@shop.example", timeout=2)
    with pytest.raises(TemporaryFailure):
        channel.send(email_message(1))
    with pytest.raises(PermanentFailure, match="cannot build"):
        channel.send(email_message(1, to="not-an-address"))


# -- HTTP ---------------------------------------------------------------------------------------


class Recorder:
    """Requests seen by the HTTP server, and what to answer per request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}  # key in body -> answer
        self.delay = 0.0


@pytest.fixture
def http_server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            recorder.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": body}
            )
            status, answer = 201, {"sid": f"SM{len(recorder.requests):04d}", "id": "wh-1"}
            for key, scripted in recorder.answers.items():
                if key.encode() in body:
                    status, answer = scripted
            if recorder.delay:
                time.sleep(recorder.delay)
            out = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()


def sms(i: int, to: str) -> Message:
    return Message(outbox_id=i, message_key=f"run:{i}:sms", channel="sms", to=to, text=f"Hi {i} 🎉")


def test_sms_posts_twilio_form_with_basic_auth(http_server: tuple[str, Recorder]) -> None:
    base, rec = http_server
    channel = channel_for(
        "sms",
        {"sms": {"type": "twilio", "base_url": base, "account_sid": "AC123",
                 "auth_token": "s3cret", "from": "+15550001111"}},
    )  # fmt: skip
    try:
        delivery = channel.send(sms(1, "+15557654321"))
    finally:
        channel.close()
    assert delivery.provider_id == "SM0001"
    (req,) = rec.requests
    assert req["path"] == "/2010-04-01/Accounts/AC123/Messages.json"
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert req["headers"]["Authorization"] == "Basic " + base64.b64encode(b"AC123:s3cret").decode()
    form = parse_qs(req["body"].decode())
    assert form == {"To": ["+15557654321"], "From": ["+15550001111"], "Body": ["Hi 1 🎉"]}
    assert "s3cret" not in repr(channel)


def test_sms_error_mapping(http_server: tuple[str, Recorder]) -> None:
    base, rec = http_server
    rec.answers = {
        "%2B1555000429": (429, {"code": 20429, "message": "Too Many Requests"}),
        "%2B1555000500": (500, {"message": "oops"}),
        "%2B1555000400": (400, {"code": 21211, "message": "Invalid 'To' Phone Number"}),
        "%2B1555000401": (401, {"code": 20003, "message": "Authenticate"}),
    }
    channel = TwilioSms("AC1", "tok", sender="+15550001111", base_url=base, timeout=0.5)
    try:
        for number in ("+1555000429", "+1555000500"):
            with pytest.raises(TemporaryFailure, match=number[-3:]):
                channel.send(sms(1, number))
        for number in ("+1555000400", "+1555000401"):
            with pytest.raises(PermanentFailure, match=number[-3:]):
                channel.send(sms(1, number))
        rec.delay = 1.5
        with pytest.raises(TemporaryFailure, match="timed out"):
            channel.send(sms(2, "+15550002222"))
    finally:
        rec.delay = 0
        channel.close()
    refused = TwilioSms("AC1", "tok", sender="+1555", base_url="http://127.0.0.1:1", timeout=1)
    with pytest.raises(TemporaryFailure):
        refused.send(sms(3, "+15550003333"))
    with pytest.raises(PermanentFailure):
        refused.send(Message(outbox_id=4, message_key="k", channel="sms", to="+1555"))


def test_webhook_posts_json_with_idempotency_key(
    http_server: tuple[str, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, rec = http_server
    monkeypatch.setenv("HOOK_TOKEN", "bearer-xyz")
    channel = channel_for(
        "webhook",
        {"webhook": {"type": "webhook", "url": f"{base}/hooks/boomerang", "bearer_env": "HOOK_TOKEN",
                     "secret": "sign-me", "headers": {"X-Tenant": "shop"}}},
    )  # fmt: skip
    msg = Message(
        outbox_id=9, message_key="run:9:step:hook", channel="webhook", to="crm",
        subject="VIP", data={"customer_id": 5, "points": 120},
    )  # fmt: skip
    try:
        assert channel.send(msg).provider_id == "wh-1"
    finally:
        channel.close()
    (req,) = rec.requests
    assert req["path"] == "/hooks/boomerang"
    headers = req["headers"]
    assert headers["Idempotency-Key"] == "run:9:step:hook"
    assert headers["Authorization"] == "Bearer bearer-xyz"
    assert headers["X-Tenant"] == "shop"
    assert headers["Content-Type"] == "application/json"
    digest = hmac.new(b"sign-me", req["body"], hashlib.sha256).hexdigest()
    assert headers["X-Boomerang-Signature"] == f"sha256={digest}"
    assert json.loads(req["body"]) == {
        "message_key": "run:9:step:hook", "outbox_id": 9, "channel": "webhook", "to": "crm",
        "subject": "VIP", "data": {"customer_id": 5, "points": 120},
    }  # fmt: skip


def test_push_through_a_gateway_and_error_mapping(http_server: tuple[str, Recorder]) -> None:
    base, rec = http_server
    rec.answers = {"device-503": (503, {}), "device-410": (410, {"error": "unregistered"})}
    channel = channel_for("push", {"push": {"type": "push", "url": f"{base}/push"}})
    assert isinstance(channel, WebhookChannel) and channel.name == "push"

    def push(token: str) -> Message:
        return Message(outbox_id=1, message_key=f"push:{token}", channel="push", to=token,
                       subject="Back in stock", text="Your beans are back")  # fmt: skip

    try:
        assert channel.send(push("device-ok")).provider_id == "wh-1"
        with pytest.raises(TemporaryFailure, match="503"):
            channel.send(push("device-503"))
        with pytest.raises(PermanentFailure, match="410"):
            channel.send(push("device-410"))
    finally:
        channel.close()
    assert rec.requests[0]["headers"]["Idempotency-Key"] == "push:device-ok"
    assert json.loads(rec.requests[0]["body"])["to"] == "device-ok"


# -- files --------------------------------------------------------------------------------------


def test_file_channel_is_atomic_and_idempotent(tmp_path: Path) -> None:
    channel = channel_for("email", {"email": {"type": "file", "dir": str(tmp_path / "out"),
                                              "sender": "Shop <hello@shop.example>"}})  # fmt: skip
    assert isinstance(channel, FileChannel)
    msg = email_message(5, message_key="run:5/../../escape:step")
    first = channel.send(msg)
    path = channel.path_for(msg)
    assert path.parent == tmp_path / "out"
    assert path.suffix == ".eml" and "/" not in path.name and not path.name.startswith(".")
    data = path.read_bytes()
    time.sleep(1.1)  # a new second: the Date would differ if it were not kept
    again = channel.send(msg)
    assert path.read_bytes() == data
    assert again == first
    parsed = parse(data)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["From"] == "Shop <hello@shop.example>"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [path.name]  # no temp files
    # A changed message under the same key replaces the file (atomically), Date kept.
    channel.send(email_message(5, message_key="run:5/../../escape:step", subject="Changed"))
    changed = parse(path.read_bytes())
    assert changed["Subject"] == "Changed" and changed["Date"] == parsed["Date"]

    sms_files = FileChannel(tmp_path / "sms", name="sms")
    sms_files.send(sms(1, "+15550001111"))
    sms_files.send(sms(1, "+15550001111"))
    (written,) = list((tmp_path / "sms").iterdir())
    assert written.name == file_stem("run:1:sms") + ".json"
    assert written.name.startswith("run_1_sms.")
    assert json.loads(written.read_text()) == {
        "channel": "sms", "message_key": "run:1:sms", "outbox_id": 1, "text": "Hi 1 🎉",
        "to": "+15550001111",
    }  # fmt: skip


def test_channel_for_refuses_bad_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no delivery settings"):
        channel_for("email", {})
    with pytest.raises(ConfigError, match="not a channel type"):
        channel_for("email", {"email": {"type": "carrier-pigeon"}})
    with pytest.raises(ConfigError, match="cannot deliver"):
        channel_for("email", {"email": {"type": "twilio"}})
    with pytest.raises(ConfigError, match="unknown channel"):
        channel_for("fax", {})
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="SMTP_PASSWORD"):
        channel_for(
            "email", {"email": {"type": "smtp", "username": "u", "password_env": "SMTP_PASSWORD"}}
        )
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2")
    smtp = channel_for("email", {"email": {"type": "smtp", "host": "mail.example", "port": 587,
                                           "username": "u", "password_env": "SMTP_PASSWORD",
                                           "starttls": True}})  # fmt: skip
    assert isinstance(smtp, SmtpChannel) and smtp.port == 587 and smtp.starttls
    assert "hunter2" not in repr(smtp) and "hunter2" not in repr(vars(smtp).get("host"))
    with pytest.raises(ConfigError, match="sender number"):
        channel_for("sms", {"sms": {"type": "twilio", "account_sid": "AC", "auth_token": "t"}})
    with pytest.raises(ConfigError, match="needs a url"):
        channel_for("push", {"push": {"type": "webhook"}})
