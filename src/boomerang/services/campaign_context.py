"""What a message template knows about its customer: the personalisation context, built for
a whole batch of customers with a few queries (docs/templates.md lists every variable).

One connection reads, per batch (ids chunked at 900): the customers, their latest orders
with lines (one windowed query), loyalty balances, tiers, the soonest-expiring points,
referral codes and latest memberships. Per customer work happens only where the data lives
in another service: a missing referral code is made (`services.referrals.referral_code`, once
per customer ever) and a member's savings statement is read (`services.memberships.statement`).
Recommendations come from a fitted `Recommender` (fit one per tick; when none is given one
is fitted here). ``sections`` (e.g. `TemplateSet.variables`) skips what a template never reads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine

from boomerang.campaigns.templates import coupon_description, format_money, micros_to_datetime
from boomerang.domain.clock import from_micros, now_micros
from boomerang.loyalty import referrals as referral_rules
from boomerang.loyalty.program import Program
from boomerang.recommend.base import Recommender, link_of
from boomerang.recommend.copurchase import fit_copurchase
from boomerang.services import memberships as membership_service
from boomerang.services import referrals as referral_service
from boomerang.services.loyalty import CODE_LENGTH, CROCKFORD, format_code, load_program
from boomerang.store.repos import campaign_context as repo
from boomerang.store.repos import campaign_web as settings_repo
from boomerang.store.repos import stores as stores_repo

#: Top-level variables built here (templates also get ``links`` and, in HTML/text, ``subject``).
SECTIONS = (
    "customer", "store", "last_order", "loyalty", "coupons", "credits", "referral",
    "membership", "recommendations", "run", "now",
)  # fmt: skip
ALWAYS = frozenset({"customer", "store", "run", "now", "coupons", "credits"})
FALLBACK_NAME = "there"
RECOMMENDATIONS = 4
LIVE = frozenset({"trial", "active", "past_due"})


def _valid_zone(name: str | None) -> str | None:
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _dt(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(int(micros))


def _customer(
    row: Mapping[str, Any], orders_count: int, store_zone: str, fallback: str
) -> dict[str, Any]:
    first = (row["first_name"] or "").strip()
    last = (row["last_name"] or "").strip()
    return {
        "id": int(row["id"]),
        "first_name": first or fallback,
        "last_name": last,
        "full_name": " ".join(p for p in (first, last) if p),
        "has_name": bool(first),
        "email": row["email"],
        "phone": row["phone"],
        "timezone": _valid_zone(row["timezone"]) or store_zone,
        "city": row["city"],
        "country": row["country"],
        "orders_count": orders_count,
        "attributes": row["attributes"] if isinstance(row["attributes"], dict) else {},
        "tags": row["tags"] if isinstance(row["tags"], list) else [],
    }


def _last_order(order: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if order is None:
        return None
    items = []
    for line in order["lines"]:
        url, image = link_of(line["attributes"])
        items.append(
            {
                "name": line["name"],
                "sku": line["sku"],
                "quantity": line["quantity"],
                "price": line["unit_price_minor"],
                "total": line["quantity"] * line["unit_price_minor"] - line["discount_minor"],
                "category": line["category"],
                "url": url,
                "image": image,
            }
        )
    return {
        "number": str(order["external_id"]),
        "date": from_micros(int(order["placed_at"])),
        "status": order["status"],
        "currency": order["currency"],
        "subtotal": int(order["subtotal_minor"]),
        "discount": int(order["discount_minor"]),
        "shipping": int(order["shipping_minor"]),
        "tax": int(order["tax_minor"]),
        "total": int(order["total_minor"]),
        "refunded": int(order["refunded_minor"]),
        "items": items,
    }


def _display_code(code: str) -> str:
    """A code the loyalty service made (12 Crockford characters) as shoppers see it
    (ABCD-EFGH-JKMN); any other code as it is."""
    if len(code) == CODE_LENGTH and set(code) <= set(CROCKFORD):
        return format_code(code)
    return code


def _named(run: Mapping[str, Any], section: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The well-formed ``{name: {...}}`` entries of a run-context section."""
    found = run.get(section)
    if isinstance(found, Mapping):
        for name, raw in found.items():
            if isinstance(raw, Mapping):
                yield str(name), raw


def _coupons(run: Mapping[str, Any], currency: str) -> dict[str, dict[str, Any]]:
    """The run's coupons ({name: {code, kind, value, expires_at}}) as templates show them."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in _named(run, "coupons"):
        kind = str(raw.get("kind", ""))
        value = int(raw.get("value") or 0)
        code = str(raw.get("code", ""))
        out[name] = {
            "code": _display_code(code),
            "kind": kind,
            "value": value,
            "expires_at": micros_to_datetime(raw.get("expires_at")),
            "description": coupon_description(kind, value, str(raw.get("currency") or currency)),
        }
    return out


def _credits(run: Mapping[str, Any], currency: str) -> dict[str, dict[str, Any]]:
    """The run's store credits ({name: {amount, currency, balance}}, minor units: the balance
    just after the grant) as templates show them, with ``description`` ("$10.00")."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in _named(run, "credits"):
        money = str(raw.get("currency") or currency)
        amount = int(raw.get("amount") or 0)
        out[str(name)] = {
            "amount": amount,
            "currency": money,
            "balance": int(raw.get("balance") or 0),
            "description": format_money(amount, money),
        }
    return out


def _referral(shares: Mapping[str, Mapping[str, str]], code: str, link: str, program: Program,
              currency: str) -> dict[str, Any]:  # fmt: skip
    config = program.referrals
    return {
        "code": code,
        "link": link,
        "share_texts": {ch: s["text"] for ch, s in shares.items()},
        "share_urls": {ch: s["url"] for ch, s in shares.items()},
        "email_subject": shares.get("email", {}).get("subject", ""),
        "friend_reward": referral_rules.describe_reward(config.friend_reward, currency),
        "referrer_reward": referral_rules.describe_reward(config.referrer_reward, currency),
    }


def _membership(row: Mapping[str, Any], savings: Any) -> dict[str, Any]:
    status = str(row["status"])
    ending = bool(row["cancel_at_period_end"])
    live = status in LIVE
    return {
        "plan": row["plan_name"],
        "plan_key": row["plan_key"],
        "status": status,
        "live": live,
        "renews_at": _dt(row["period_end"])
        if status in ("trial", "active") and not ending
        else None,
        "trial_ends_at": _dt(row["trial_ends_at"]) if status == "trial" else None,
        "ends_at": _dt(row["period_end"]) if live and ending else _dt(row["ended_at"]),
        "currency": row["plan_currency"],
        "savings_this_year": savings.saved_minor,
        "fees_this_year": savings.fees_paid_minor,
        "net_savings_this_year": savings.net_saved_minor,
        "member_orders_this_year": len(savings.orders),
    }


def with_run(
    context: Mapping[str, Any], run: Mapping[str, Any] | None, currency: str | None = None
) -> dict[str, Any]:
    """A customer's context for one message: ``coupons``, ``credits`` and ``run`` from that
    message's run context (the rest is shared by every message to the customer)."""
    found = dict(run or {})
    money = currency or str(context["store"]["currency"])
    return {
        **context, "coupons": _coupons(found, money), "credits": _credits(found, money),
        "run": found,
    }  # fmt: skip


def build_contexts(
    engine: Engine,
    store: str,
    customer_ids: Sequence[int],
    *,
    runs: Mapping[int, Mapping[str, Any]] | None = None,
    recommender: Recommender | None = None,
    now: int | None = None,
    sections: Collection[str] | None = None,
    k: int = RECOMMENDATIONS,
    create_referral_codes: bool = True,
    fallback_name: str = FALLBACK_NAME,
) -> dict[int, dict[str, Any]]:
    """The template context of each customer (ids not in the store are left out).

    ``runs``: each customer's run/message context (coupons issued, credits granted, variants,
    trigger facts);
    ``recommender``: a fitted recommender (None: fit the co-purchase one now, when the
    templates read recommendations); ``sections``: the top-level variables wanted (None:
    all); ``create_referral_codes``: make a referral code for a referrer who has none yet
    (what the message would show), else ``referral`` is None for them."""
    at = now_micros() if now is None else now
    wanted = set(SECTIONS) if sections is None else (set(sections) & set(SECTIONS)) | ALWAYS
    ids = sorted({int(c) for c in customer_ids})
    runs = runs or {}
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
        settings = settings_repo.load_config(conn, row.id)
        people = repo.customers_by_id(conn, row.id, ids)
        ids = [c for c in ids if c in people]
        last = repo.last_orders(conn, row.id, ids)
        program: Program | None = None
        if wanted & {"loyalty", "referral"}:
            program = load_program(conn, row.id)
        balances = tiers = {}
        expiring: dict[int, tuple[int, int]] = {}
        if "loyalty" in wanted:
            balances = repo.loyalty_balances(conn, row.id, ids, row.currency)
            tiers = repo.tiers(conn, row.id, ids)
            expiring = repo.next_expiring_points(conn, row.id, ids, at)
        codes: dict[int, str] = {}
        referrals_on = program is not None and program.referrals.enabled and "referral" in wanted
        if referrals_on:
            codes = repo.referral_codes_of(conn, row.id, ids)
        members = repo.latest_memberships(conn, row.id, ids) if "membership" in wanted else {}
    store_zone = _valid_zone(row.timezone) or "UTC"
    moment = from_micros(at)
    store_view = {
        "name": row.name,
        "currency": row.currency,
        "timezone": store_zone,
        "url": str(settings.get("store_url") or ""),
    }
    picks: dict[int, list[Any]] = {}
    if "recommendations" in wanted and ids:
        chooser = recommender if recommender is not None else fit_copurchase(engine, row.id, now=at)
        picks = {
            c: [p.as_context() for p in found] for c, found in chooser.recommend(ids, k).items()
        }
    out: dict[int, dict[str, Any]] = {}
    for cid in ids:
        person = people[cid]
        order = last.get(cid)
        run = dict(runs.get(cid) or {})
        ctx: dict[str, Any] = {
            "customer": _customer(
                person, int(order["orders_count"]) if order else 0, store_zone, fallback_name
            ),
            "store": store_view,
            "coupons": _coupons(run, row.currency),
            "credits": _credits(run, row.currency),
            "run": run,
            "now": moment,
        }
        if "last_order" in wanted:
            ctx["last_order"] = _last_order(order)
        if "loyalty" in wanted:
            assert program is not None
            held = balances.get(cid, {})
            tier = tiers.get(cid)
            soon = expiring.get(cid)
            found_tier = program.tier_named(tier)
            ctx["loyalty"] = {
                "points": held.get("points", 0),
                "pending": held.get("pending", 0),
                "credit": held.get("credit", 0),
                "tier": tier,
                "tier_perks": list(found_tier.perks) if found_tier else [],
                "next_expiry": None if soon is None else {"points": soon[0], "at": from_micros(soon[1])},
            }  # fmt: skip
        if "referral" in wanted:
            ctx["referral"] = None
            if referrals_on and program is not None:
                ctx["referral"] = _referral_of(
                    engine, store, cid, person, codes.get(cid), program, row.currency, at,
                    create=create_referral_codes,
                )  # fmt: skip
        if "membership" in wanted:
            ctx["membership"] = None
            m = members.get(cid)
            if m is not None:
                savings = membership_service.statement(engine, store, cid, moment.year)
                ctx["membership"] = _membership(m, savings)
        if "recommendations" in wanted:
            ctx["recommendations"] = picks.get(cid, [])
        out[cid] = ctx
    return out


def _referral_of(
    engine: Engine,
    store: str,
    customer_id: int,
    person: Mapping[str, Any],
    code: str | None,
    program: Program,
    currency: str,
    at: int,
    *,
    create: bool,
) -> dict[str, Any] | None:
    if code is None:
        if not create:
            return None
        made = referral_service.referral_code(engine, store, customer_id, now=at)
        return _referral(made.shares, made.code, made.link, program, currency)
    shares = referral_rules.share_texts(
        program.referrals, code=code, first_name=person["first_name"], currency=currency
    )
    link = referral_rules.referral_link(program.referrals.link_base, code)
    return _referral(shares, format_code(code), link, program, currency)
