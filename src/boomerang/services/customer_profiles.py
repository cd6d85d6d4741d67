"""One customer's profile: identity, consents and lifetime aggregates, in display units."""

from __future__ import annotations

from typing import Any

from boomerang.domain.clock import from_micros
from boomerang.domain.money import Money
from boomerang.errors import NotFoundError
from boomerang.services.context import open_engine
from boomerang.store.repos import customers as customers_repo
from boomerang.store.repos import stores as stores_repo


def get_profile(db: str, store: str, ref: str) -> dict[str, Any]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            store_row = stores_repo.get(conn, store)
            customer = customers_repo.find(conn, store_row.id, ref)
            if customer is None:
                raise NotFoundError(
                    f"no customer {ref!r} in store {store!r}",
                    hint="use the external id or email shown by an import, or the numeric id",
                )
            agg = customers_repo.order_aggregates(conn, store_row.id, customer["id"])
            consent = customers_repo.latest_consents(conn, customer["id"])
    finally:
        engine.dispose()
    currency = agg["currency"] or store_row.currency
    profile = {k: v for k, v in customer.items() if k not in ("store_id",)}
    if profile.get("created_at") is not None:
        profile["created_at"] = from_micros(profile["created_at"]).isoformat()
    profile.update(
        orders=agg["orders"],
        first_order_at=from_micros(agg["first_order_at"]).isoformat()
        if agg["first_order_at"]
        else None,
        last_order_at=from_micros(agg["last_order_at"]).isoformat()
        if agg["last_order_at"]
        else None,
        gross_revenue=str(Money.from_minor(int(agg["gross_minor"]), currency)),
        net_revenue=str(
            Money.from_minor(int(agg["gross_minor"]) - int(agg["refunded_minor"]), currency)
        ),
        consent_email=consent.get("email", "none"),
        consent_sms=consent.get("sms", "none"),
        consent_push=consent.get("push", "none"),
    )
    return profile
