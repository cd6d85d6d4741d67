"""The hand-built RFC 5322 bytes of `boomerang.campaigns.mime.build`, parsed back by the
stdlib (``BytesParser(policy=email.policy.default)``): headers, both parts, non-ASCII
subject/names/bodies, long lines, CRLF only, no header injection, stable ids.
"""

from __future__ import annotations

import email.policy
import re
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boomerang.campaigns.channels.base import Message
from boomerang.campaigns.mime import build, list_unsubscribe_headers, message_id

SENDER = "Café Boomerang <hello@shop.example>"


def parse(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def content(part: EmailMessage) -> str:
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def message(**overrides: object) -> Message:
    fields: dict[str, object] = {
        "outbox_id": 7,
        "message_key": "run:42:step:welcome",
        "channel": "email",
        "to": "jane@example.com",
        "subject": "Welcome back",
        "html": "<p>Hello <b>Jane</b></p>\n",
        "text": "Hello Jane\n",
        "sender": SENDER,
    }
    fields.update(overrides)
    return Message(**fields)  # type: ignore[arg-type]


def assert_wire_format(data: bytes) -> None:
    """CRLF line endings only, no line over 998 octets, 7-bit clean."""
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert data.isascii()


def test_multipart_alternative_parses_back_with_every_header() -> None:
    built = build(message(), unsubscribe_url="https://links.shop.example/u/TOKEN")
    assert_wire_format(built.data)
    msg = parse(built.data)
    assert msg.defects == []
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["From"] == SENDER
    assert msg["From"].addresses[0].display_name == "Café Boomerang"
    assert msg["To"] == "jane@example.com"
    assert msg["Subject"] == "Welcome back"
    assert msg["Date"].datetime.tzinfo is not None
    assert msg["Message-ID"] == built.message_id
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Unsubscribe"] == "<https://links.shop.example/u/TOKEN>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = msg.iter_parts()
    assert [text.get_content_type(), html.get_content_type()] == ["text/plain", "text/html"]
    assert content(text) == "Hello Jane\n"  # type: ignore[arg-type]
    assert content(html) == "<p>Hello <b>Jane</b></p>\n"  # type: ignore[arg-type]
    assert (built.envelope_from, built.recipient) == ("hello@shop.example", "jane@example.com")


def test_non_ascii_subject_names_and_bodies_round_trip() -> None:
    subject = "Grüße, Zoë — 你好 🎉 your 10% off is waiting " * 3
    built = build(
        message(
            subject=subject,
            to="Zoë Ünger <zoe@example.com>",
            text="Grüße 🎉\nZeile zwei\n",
            html="<p>你好, Zoë — <a href='https://shop.example/ü'>shop</a></p>",
        )
    )
    assert_wire_format(built.data)
    assert b"=?utf-8?b?" in built.data
    msg = parse(built.data)
    assert msg.defects == []
    assert msg["Subject"] == subject  # inside encoded words every space is kept
    assert msg["To"].addresses[0].display_name == "Zoë Ünger"
    assert msg["To"].addresses[0].addr_spec == "zoe@example.com"
    text, html = msg.iter_parts()
    assert text["Content-Transfer-Encoding"] == "base64"
    assert content(text) == "Grüße 🎉\nZeile zwei\n"  # type: ignore[arg-type]
    assert content(html) == "<p>你好, Zoë — <a href='https://shop.example/ü'>shop</a></p>\n"  # type: ignore[arg-type]
    assert built.recipient == "zoe@example.com"


def test_long_lines_are_encoded_and_long_subjects_folded() -> None:
    long_html = "<td>" + "x" * 5000 + "</td>"  # css-inlined HTML is often one long line
    subject = " ".join(f"word{i}" for i in range(60))
    built = build(message(html=long_html, subject=subject))
    assert_wire_format(built.data)
    head = built.data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    msg = parse(built.data)
    assert msg["Subject"] == subject
    text, html = msg.iter_parts()
    assert text["Content-Transfer-Encoding"] == "7bit"
    assert html["Content-Transfer-Encoding"] == "base64"
    assert content(html) == long_html + "\n"  # type: ignore[arg-type]


def test_text_that_looks_like_an_encoded_word_stays_literal() -> None:
    subject = "Use code =?utf-8?b?SGk=?= today"
    assert parse(build(message(subject=subject)).data)["Subject"] == subject


def test_single_part_messages() -> None:
    text_only = parse(build(message(html="")).data)
    assert text_only.get_content_type() == "text/plain"
    assert content(text_only) == "Hello Jane\n"
    html_only = parse(build(message(text="")).data)
    assert html_only.get_content_type() == "text/html"
    assert content(html_only) == "<p>Hello <b>Jane</b></p>\n"


def test_a_body_holding_the_boundary_or_control_characters_is_encoded() -> None:
    first = build(message())
    boundary = re.search(rb'boundary="([^"]+)"', first.data)
    assert boundary is not None
    tricky = f"--{boundary.group(1).decode()}--\nafter\n"
    msg = parse(build(message(text=tricky, html="nul\x00byte")).data)
    text, html = msg.iter_parts()
    assert content(text) == tricky  # type: ignore[arg-type]
    assert text["Content-Transfer-Encoding"] == "base64"
    assert content(html) == "nul\x00byte\n"  # type: ignore[arg-type]


def test_header_values_cannot_inject_headers() -> None:
    built = build(
        message(
            subject="Hi\r\nBcc: victim@example.com",
            headers={"X-Campaign": "spring\nBcc: other@example.com"},
        )
    )
    msg = parse(built.data)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Hi Bcc: victim@example.com"
    assert msg["X-Campaign"] == "spring Bcc: other@example.com"
    with pytest.raises(ValueError, match="set by the MIME builder"):
        build(message(headers={"Content-Type": "text/plain"}))
    with pytest.raises(ValueError, match="header name"):
        build(message(headers={"Bad Name": "x"}))
    with pytest.raises(ValueError, match="not an email address"):
        build(message(to="nobody"))


def test_message_headers_replace_defaults_and_ids_are_stable() -> None:
    pinned = build(
        message(
            headers={
                "Date": "Tue, 01 Dec 2026 10:00:00 +0000",
                "Subject": "Overridden",
                "X-Flow": "welcome",
                **list_unsubscribe_headers("https://links.shop.example/u/T"),
            }
        )
    )
    msg = parse(pinned.data)
    assert msg.get_all("Date") == ["Tue, 01 Dec 2026 10:00:00 +0000"]
    assert msg.get_all("Subject") == ["Overridden"]
    assert msg["X-Flow"] == "welcome"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The same message twice (a retry): same Message-ID, same bytes.
    assert build(message(headers={"Date": "x"})).data == build(message(headers={"Date": "x"})).data
    assert pinned.message_id == message_id("run:42:step:welcome", "shop.example")
    assert build(message(message_key="run:43:step:welcome")).message_id != pinned.message_id
    assert pinned.message_id.startswith("<run-42-step-welcome.")
    assert pinned.message_id.endswith("@shop.example>")


def test_one_click_needs_https() -> None:
    assert list_unsubscribe_headers("http://127.0.0.1:8080/u/T") == {
        "List-Unsubscribe": "<http://127.0.0.1:8080/u/T>"
    }
    both = list_unsubscribe_headers("https://l.example/u/T", mailto="unsub@l.example")
    assert both["List-Unsubscribe"] == "<https://l.example/u/T>, <mailto:unsub@l.example>"


def test_addresses_with_specials_and_international_domains() -> None:
    msg = parse(build(message(sender='"Shop, Inc. \\"EU\\"" <hello@shop.example>')).data)
    assert msg["From"].addresses[0].display_name == 'Shop, Inc. "EU"'
    assert msg["From"].addresses[0].addr_spec == "hello@shop.example"
    built = build(message(to="jane@bücher.example"))
    assert built.recipient == "jane@xn--bcher-kva.example"
    with pytest.raises(ValueError, match="SMTPUTF8"):
        build(message(to="jöhn@example.com"))


def test_the_sender_default_is_used_when_the_message_has_none() -> None:
    built = build(message(sender=""), sender="News <news@shop.example>")
    assert parse(built.data)["From"] == "News <news@shop.example>"
    assert built.message_id.endswith("@shop.example>")


printable = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"),
    max_size=200,
)
body = st.text(st.characters(blacklist_categories=("Cs",)), max_size=3000)


@settings(max_examples=150, deadline=None)
@given(subject=printable, text=body, html=body)
def test_any_text_round_trips(subject: str, text: str, html: str) -> None:
    built = build(message(subject=subject, text=text, html=html))
    assert_wire_format(built.data)
    msg = parse(built.data)
    # Header whitespace is not significant: runs of it may be folded or unfolded.
    assert " ".join(str(msg["Subject"]).split()) == " ".join(subject.split())

    def expected(value: str) -> str:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        return value if not value or value.endswith("\n") else value + "\n"

    parts = list(msg.iter_parts()) if msg.is_multipart() else [msg]
    got = [content(p) for p in parts]  # type: ignore[arg-type]
    want = [expected(v) for v in (text, html) if v] or [""]
    if text and html:
        assert got == want
    else:
        assert got[0] == (want[0] if want else "")
