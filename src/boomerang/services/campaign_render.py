"""Rendering messages: the one path both the dispatcher and ``boomerang flows preview`` take,
so a preview shows exactly what would be sent (docs/templates.md#preview).

``render_messages`` renders a batch: one `TemplateSet` per templates directory (compiled
and CSS-inlined once per process), one `build_contexts` call for all the batch's customers
(only the sections its templates read), then each message's own run context (coupons,
variants, trigger) and links.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from boomerang.campaigns.flow import Flow
from boomerang.campaigns.templates import Links, Rendered, TemplateSet, validate_flow
from boomerang.domain.clock import now_micros
from boomerang.errors import NotFoundError
from boomerang.recommend.base import Recommender
from boomerang.recommend.copurchase import fit_copurchase
from boomerang.services.campaign_context import build_contexts, with_run
from boomerang.services.context import open_engine
from boomerang.store.repos import customers as customers_repo
from boomerang.store.repos import stores as stores_repo

#: Links a preview shows where a sent message has its signed unsubscribe/preferences links.
PREVIEW_LINKS = Links(unsubscribe="#unsubscribe-preview", preferences="#preferences-preview")

#: A recommender fitted for a store is reused this long (a campaign tick's worth) by
#: `render_messages` calls that do not pass their own.
RECOMMENDER_TTL_SECONDS = 900.0

_SETS: dict[str, TemplateSet] = {}
_FITTED: dict[tuple[str, str], tuple[float, Recommender]] = {}
_LOCK = threading.Lock()


def template_set(templates_dir: str | Path | None) -> TemplateSet:
    """The process's `TemplateSet` for a directory (None: built-ins only)."""
    key = str(Path(templates_dir).resolve()) if templates_dir else ""
    with _LOCK:
        found = _SETS.get(key)
        if found is None:
            found = TemplateSet(templates_dir)
            _SETS[key] = found
    return found


def shared_recommender(engine: Engine, store: str, *, now: int | None = None) -> Recommender:
    """The store's co-purchase recommender, fitted at most once per
    `RECOMMENDER_TTL_SECONDS` in this process (two Arrow reads and a sparse product)."""
    key = (engine.url.render_as_string(hide_password=True), store)
    with _LOCK:
        found = _FITTED.get(key)
    if found is not None and time.monotonic() - found[0] < RECOMMENDER_TTL_SECONDS:
        return found[1]
    at = now_micros() if now is None else now
    with engine.connect() as conn:
        store_id = stores_repo.get(conn, store).id
    fitted = fit_copurchase(engine, store_id, now=at)
    with _LOCK:
        _FITTED[key] = (time.monotonic(), fitted)
    return fitted


@dataclass(frozen=True)
class RenderRequest:
    """One message to render: whom, which template on which channel, the message's run
    context (``coupons``, ``variants``, ``trigger``) and its links."""

    customer_id: int
    template: str
    channel: str
    run_context: Mapping[str, Any] = field(default_factory=dict)
    links: Links | None = None


def render_messages(
    engine: Engine,
    store: str,
    requests: Sequence[RenderRequest],
    *,
    templates_dir: str | Path | None,
    recommender: Recommender | None = None,
    now: int | None = None,
    create_referral_codes: bool = True,
) -> list[Rendered]:
    """Render a batch of messages, in the order given. A customer not in the store is a
    `NotFoundError`; a template problem is a `TemplateError` (neither is worth a retry).
    Without a ``recommender``, templates that show recommendations use the store's
    `shared_recommender` (fitted at most every `RECOMMENDER_TTL_SECONDS`)."""
    if not requests:
        return []
    templates = template_set(templates_dir)
    sections: set[str] | None = set()
    for r in requests:
        found = templates.variables(r.template, r.channel)
        if found is None or sections is None:
            sections = None
        else:
            sections |= found
    at = now_micros() if now is None else now
    if recommender is None and (sections is None or "recommendations" in sections):
        recommender = shared_recommender(engine, store, now=at)
    contexts = build_contexts(
        engine, store, [r.customer_id for r in requests], recommender=recommender, now=at,
        sections=sections, create_referral_codes=create_referral_codes,
    )  # fmt: skip
    out = []
    for r in requests:
        base = contexts.get(int(r.customer_id))
        if base is None:
            raise NotFoundError(
                f"no customer {r.customer_id} in store {store!r}",
                hint="use the id of a customer of this store",
            )
        ctx = with_run(base, r.run_context)
        ctx["links"] = r.links or Links()
        out.append(templates.render(r.template, r.channel, ctx))
    return out


def render_message(
    engine: Engine,
    store: str,
    customer_id: int,
    template: str,
    channel: str,
    run_context: Mapping[str, Any] | None,
    *,
    templates_dir: str | Path | None,
    links: Links | None,
    recommender: Recommender | None = None,
    now: int | None = None,
) -> Rendered:
    """Render one message (see `render_messages`; batch when you can)."""
    request = RenderRequest(customer_id, template, channel, run_context or {}, links)
    return render_messages(
        engine, store, [request], templates_dir=templates_dir, recommender=recommender, now=now
    )[0]


@dataclass
class Preview:
    """A rendered preview and how the template was rendered (CSS inlined at load or per
    message, the text part derived or written, notes)."""

    customer_id: int
    template: str
    channel: str
    rendered: Rendered
    mode: dict[str, Any]


def preview(
    db: str,
    store: str,
    template: str,
    channel: str,
    customer_ref: str,
    templates_dir: str | Path | None,
    *,
    run_context: Mapping[str, Any] | None = None,
    links: Links | None = None,
    now: int | None = None,
) -> Preview:
    """Render ``template`` for one customer (numeric id, external id or email) exactly as the
    dispatcher would. Give the message's ``run_context`` (its coupons) to see those; the
    links default to `PREVIEW_LINKS`. Like a send, it makes the customer's referral code
    when the template shows one and they have none yet."""
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            found = customers_repo.find(conn, row.id, customer_ref)
        if found is None:
            raise NotFoundError(
                f"no customer {customer_ref!r} in store {store!r}",
                hint="use the external id or email shown by an import, or the numeric id",
            )
        cid = int(found["id"])
        rendered = render_message(
            engine, store, cid, template, channel, run_context,
            templates_dir=templates_dir, links=links or PREVIEW_LINKS, now=now,
        )  # fmt: skip
    finally:
        engine.dispose()
    return Preview(
        cid, template, channel, rendered, template_set(templates_dir).mode(template, channel)
    )


def validate_flow_templates(
    flow: Flow, templates_dir: str | Path | None, *, currency: str = "USD"
) -> list[str]:
    """Every Send step's template exists for its channel and renders with sample customers
    (`campaigns.templates.validate_flow`); returns warnings, raises `TemplateError`."""
    return validate_flow(flow, template_set(templates_dir), currency=currency)
