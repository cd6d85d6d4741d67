"""Turn claimed outbox rows into deliverable `Message`s: render the batch with its
personalisation (few queries for many messages), sign its links (unsubscribe, one-click,
preferences, open pixel, click tracking) and add the RFC 8058 headers to email.

A message that cannot be rendered (a template error, a vanished customer) comes back as
its exception, so the dispatcher fails that message alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from boomerang.campaigns.channels.base import Message
from boomerang.campaigns.templates import Links as TemplateLinks
from boomerang.services import campaign_web
from boomerang.services.campaign_render import RenderRequest, render_messages


@dataclass(frozen=True)
class SendSettings:
    """From the store's campaign settings: where links point, who sends, which templates."""

    base_url: str
    sender: str
    templates_dir: str | None

    @staticmethod
    def of(config: Mapping[str, Any]) -> SendSettings:
        return SendSettings(
            base_url=str(config.get("base_url") or "http://127.0.0.1:8080"),
            sender=str(config.get("sender") or "Boomerang <no-reply@localhost>"),
            templates_dir=config.get("templates_dir"),
        )


def address_for(channel: str, contact: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """Where a message on ``channel`` goes (empty: the customer is unreachable there)."""
    if channel == "email":
        return str(contact.get("email") or "")
    if channel == "sms":
        return str(contact.get("phone") or "")
    if channel == "webhook":
        return str(context.get("url") or "")
    return str(contact.get("push_token") or "")


def build_messages(
    engine: Engine,
    store: str,
    rows: list[dict[str, Any]],
    contacts: Mapping[int, Mapping[str, Any]],
    settings: SendSettings,
    now: int,
) -> dict[int, Message | Exception]:
    """outbox id -> the message to deliver (or why it cannot be built)."""
    out: dict[int, Message | Exception] = {}
    templated, links = [], {}
    for row in rows:
        oid, cid = int(row["id"]), int(row["customer_id"])
        context = json.loads(row["context"])
        if row["channel"] == "webhook":
            out[oid] = Message(
                outbox_id=oid, message_key=str(row["message_key"]), channel="webhook",
                to=str(context.get("url") or ""),
                data={"customer_id": cid, "flow_id": row["flow_id"], "step": row["step_id"],
                      "context": context},
            )  # fmt: skip
            continue
        signed = campaign_web.links_for(engine, store, oid, cid, settings.base_url)
        links[oid] = signed
        templated.append((row, context, signed))
    if not templated:
        return out
    requests = [
        RenderRequest(
            int(row["customer_id"]),
            str(row["template"]),
            str(row["channel"]),
            context,
            TemplateLinks(
                unsubscribe=signed.unsubscribe,
                preferences=signed.preferences,
                open_pixel=signed.pixel,
                track=signed.track_click,
            ),
        )
        for row, context, signed in templated
    ]
    try:
        rendered = render_messages(engine, store, requests, templates_dir=_dir(settings), now=now)
    except Exception:  # one bad message must not fail the batch: render one by one
        rendered = []
        for request in requests:
            try:
                rendered.extend(
                    render_messages(engine, store, [request], templates_dir=_dir(settings), now=now)
                )
            except Exception as exc:
                rendered.append(exc)  # type: ignore[arg-type]
    for (row, context, signed), result in zip(templated, rendered, strict=True):
        oid, channel = int(row["id"]), str(row["channel"])
        if isinstance(result, Exception):
            out[oid] = result
            continue
        contact = contacts.get(int(row["customer_id"]), {})
        out[oid] = Message(
            outbox_id=oid, message_key=str(row["message_key"]), channel=channel,
            to=address_for(channel, contact, context), subject=result.subject, html=result.html,
            text=result.sms if channel == "sms" else result.text, sender=settings.sender,
            headers=signed.headers() if channel == "email" else {},
        )  # fmt: skip
    return out


def _dir(settings: SendSettings) -> Path | None:
    return Path(settings.templates_dir) if settings.templates_dir else None
