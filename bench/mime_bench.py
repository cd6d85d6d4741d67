"""Building the bytes of a marketing email: `boomerang.campaigns.mime.build` vs the stdlib.

    python bench/mime_bench.py [--messages 3000] [--repeat 3]

Both sides build the same message per customer (personalised subject and bodies, a 12 kB
inlined HTML part with non-ASCII text, a text part, From/To/Subject/Date/Message-ID and the
List-Unsubscribe headers) and serialise it to CRLF bytes, as a send loop would hand them
to smtplib. Baseline: `email.message.EmailMessage` (``set_content`` + ``add_alternative``,
``as_bytes(policy=SMTP)``), the naive loop's way; `MIMEMultipart` is printed too. Best of
``--repeat`` runs each.
"""

from __future__ import annotations

import argparse
import email.policy
import time
from collections.abc import Callable
from email.header import Header
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr

from boomerang.campaigns.channels.base import Message
from boomerang.campaigns.mime import build

COMPAT_CRLF = email.policy.compat32.clone(linesep="\r\n")
SENDER = "Café Boomerang <hello@shop.example>"
ROW = (
    '<tr><td style="padding:8px;font-family:Arial,sans-serif;color:#333">Grüße, {name}! '
    "Your favourite coffee beans are back in stock — order again and earn 2x points.</td>"
    '<td style="padding:8px"><a href="https://shop.example/c/{i}/{j}">Shop now</a></td></tr>\n'
)


def messages(n: int) -> list[Message]:
    out = []
    for i in range(n):
        name = f"Customer {i}"
        html = "<html><body><table>" + "".join(ROW.format(name=name, i=i, j=j) for j in range(48))
        html += "</table></body></html>"
        text = "\n".join(
            f"Grüße, {name}! Line {j}: https://shop.example/c/{i}/{j}" for j in range(20)
        )
        out.append(
            Message(
                outbox_id=i,
                message_key=f"run:{i}:step:welcome",
                channel="email",
                to=f"customer{i}@example.com",
                subject=f"{name}, wir vermissen dich — 10% off",
                html=html,
                text=text,
                sender=SENDER,
                headers={
                    "List-Unsubscribe": f"<https://shop.example/u/token{i}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
            )
        )
    return out


def ours(batch: list[Message]) -> int:
    return sum(len(build(m).data) for m in batch)


def email_message(batch: list[Message]) -> int:
    total = 0
    for m in batch:
        msg = EmailMessage()
        msg["From"] = m.sender
        msg["To"] = m.to
        msg["Subject"] = m.subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{m.message_key}@shop.example>"
        for k, v in m.headers.items():
            msg[k] = v
        msg.set_content(m.text)
        msg.add_alternative(m.html, subtype="html")
        total += len(msg.as_bytes(policy=email.policy.SMTP))
    return total


def mime_multipart(batch: list[Message]) -> int:
    total = 0
    for m in batch:
        msg = MIMEMultipart("alternative")
        name, addr = parseaddr(m.sender)
        msg["From"] = formataddr((name, addr), charset="utf-8")
        msg["To"] = m.to
        msg["Subject"] = Header(m.subject, "utf-8")
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{m.message_key}@shop.example>"
        for k, v in m.headers.items():
            msg[k] = v
        msg.attach(MIMEText(m.text, "plain", "utf-8"))
        msg.attach(MIMEText(m.html, "html", "utf-8"))
        total += len(msg.as_bytes(policy=COMPAT_CRLF))
    return total


def rate(fn: Callable[[list[Message]], int], batch: list[Message], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    batch = messages(args.messages)
    size = len(build(batch[0]).data)
    print(f"{args.messages} messages of about {size / 1024:.1f} kB")
    fast = rate(ours, batch, args.repeat)
    slow_batch = batch[: max(1, args.messages // 5)]
    em = rate(email_message, slow_batch, args.repeat)
    mm = rate(mime_multipart, slow_batch, args.repeat)
    print(f"boomerang mime.build: {fast:,.0f} msg/s")
    print(f"EmailMessage:         {em:,.0f} msg/s")
    print(f"MIMEMultipart:        {mm:,.0f} msg/s ({fast / mm:.1f}x slower than ours)")
    print(
        f"BENCH mime_build value={fast:.0f} unit=msg/s baseline=email_message ratio={fast / em:.1f}"
    )


if __name__ == "__main__":
    main()
