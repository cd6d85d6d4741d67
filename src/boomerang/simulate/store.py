"""`simulate_store`: the whole synthetic store in memory, and its views for the two outputs.

Why one object: direct-to-database mode and the Shopify CSV writer read the same arrays,
so the same seed gives the same customers and orders whichever way the data leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from boomerang.ingest.batch import conform, digest_lines
from boomerang.ingest.orders_common import LINE_DIGEST_COLUMNS
from boomerang.simulate.calendar import (
    MICROS_PER_SECOND,
    Calendar,
    apply_daily_rhythm,
    hour_profile,
)
from boomerang.simulate.catalogue import Catalogue, build_catalogue
from boomerang.simulate.customers import (
    REPLENISHER,
    SEGMENT_NAMES,
    SHOPPER,
    SUBSCRIBER,
    Population,
    draw_population,
)
from boomerang.simulate.customers import visitor_ids as make_visitor_ids
from boomerang.simulate.geo import CITIES, city_table
from boomerang.simulate.orders import GUEST, OrderBook, build_orders, draw_purchases
from boomerang.simulate.params import SimulationParams
from boomerang.simulate.sessions import EVENT_TYPES, build_events
from boomerang.simulate.util import keep

I64 = NDArray[np.int64]

# Independent random streams, so changing one part of the model leaves the others' draws alone.
STREAMS = ("catalogue", "people", "timing", "baskets", "sessions")


@dataclass(frozen=True)
class SimulatedStore:
    """Everything generated for one (customers, days, seed, params)."""

    seed: int
    days: int
    params: SimulationParams
    calendar: Calendar
    catalogue: Catalogue
    population: Population
    book: OrderBook
    created_at: I64  # per customer: first order (buyers) or sign-up (subscribers), micros
    events: pl.DataFrame  # person, visitor, type, occurred_at, city, properties
    anonymous_visitors: int

    # -- shared views -------------------------------------------------------------------------

    def customers(self) -> pl.DataFrame:
        """One row per customer with contact data, address, consent state and order totals."""
        pop = self.population
        cities = city_table()
        orders = self.book.orders
        owner = orders["owner"].to_numpy()
        counted = (owner >= 0) & (orders["status"] != "cancelled").to_numpy()
        net = (orders["total_minor"] - orders["refunded_minor"]).to_numpy()
        n_orders = np.bincount(owner[counted], minlength=pop.size)
        spent = np.bincount(owner[counted], weights=net[counted], minlength=pop.size)
        unsubscribed = ~np.isnan(pop.unsubscribed)
        unsubscribed_at = self.calendar.to_micros(np.nan_to_num(pop.unsubscribed))
        return pl.DataFrame(
            {
                "idx": np.arange(pop.size, dtype=np.int64),
                "segment": pl.Series(SEGMENT_NAMES)[pop.segment],
                "shopify_id": pop.shopify_id,
                "email": pop.email,
                "shown_email": pop.shown_email,
                "first_name": pop.first_name,
                "last_name": pop.last_name,
                "phone": pop.phone,
                "address1": pop.address1,
                "birthday": pop.birthday,
                "city_idx": pop.city,
                **{c: cities[c].gather(pop.city) for c in cities.columns},
                "created_at": self.created_at,
                "registered": pop.registered,
                "email_opt_in": pop.email_opt_in,
                "email_subscribed": pop.email_opt_in & ~unsubscribed,
                "unsubscribed_at": keep(pl.Series(unsubscribed_at), unsubscribed),
                "sms_opt_in": pop.sms_opt_in,
                "orders": n_orders.astype(np.int64),
                "spent_minor": np.rint(spent).astype(np.int64),
            }
        )

    def order_names(self) -> pl.Series:
        """Shopify order names ("#1001", ...): the orders' external ids."""
        return self.book.orders["name"]

    # -- direct-to-database frames --------------------------------------------------------------

    def store_frames(
        self, source: str = "simulator", *, digests: bool = True
    ) -> dict[str, pl.DataFrame]:
        """The normalised frames `services.imports.apply_frames` takes (see FRAME_SCHEMAS).

        ``digests=False`` leaves ``lines_digest`` empty: only for timing the generation, as
        the digest (a Python hash per order) dominates at millions of orders.
        """
        customers = self.customers()
        key = _email_of(customers, self.book.orders["owner"].to_numpy())
        orders = self.book.orders.with_columns(
            pl.col("name").alias("external_id"),
            key.alias("customer_key"),
            key.alias("email"),
            pl.lit(self.params.currency).alias("currency"),
            pl.when(pl.col("pos"))
            .then(pl.lit("offline"))
            .otherwise(pl.lit("online"))
            .alias("channel"),
            pl.lit(source).alias("source"),
        )
        lines = self.store_lines()
        orders = orders.with_columns(
            self._digests(lines) if digests else pl.lit("").alias("lines_digest")
        )
        frames = {
            "customers": conform("customers", self._store_customers(customers)),
            "consents": conform("consents", self._store_consents(customers)),
            "products": conform(
                "products",
                self.catalogue.frame.with_columns(pl.lit(self.params.currency).alias("currency")),
            ),
            "orders": conform("orders", orders),
            "lines": conform("lines", lines),
            "events": conform("events", self.store_events(customers)),
        }
        return frames

    def _digests(self, lines: pl.DataFrame) -> pl.Series:
        """The importer's per-order line digest, keyed by order position (no string join).

        Every order has at least one line, so the digests sorted by position line up with
        the orders.
        """
        keyed = lines.with_columns(self.book.lines["order_idx"].alias("__order"))
        digests = digest_lines(keyed, "__order", LINE_DIGEST_COLUMNS).sort("__order")
        if digests.height != self.book.orders.height:
            raise RuntimeError("a simulated order without lines")
        return digests["lines_digest"]

    def store_lines(self) -> pl.DataFrame:
        products = self.catalogue.frame.select("sku", "name", "category")
        product = self.book.lines["product"].to_numpy()
        names = self.order_names()
        return self.book.lines.select(
            names.gather(self.book.lines["order_idx"].to_numpy()).alias("order_external_id"),
            "line_no",
            products["sku"].gather(product),
            products["name"].gather(product),
            products["category"].gather(product),
            "quantity",
            "unit_price_minor",
            "discount_minor",
        )

    def _store_customers(self, customers: pl.DataFrame) -> pl.DataFrame:
        return customers.select(
            pl.col("email").alias("external_id"),
            pl.col("shopify_id").cast(pl.String).alias("source_id"),
            "email",
            "phone",
            "first_name",
            "last_name",
            "city",
            pl.when(pl.col("province") != "").then(pl.col("province")).alias("region"),
            "country",
            "zip",
            "timezone",
            "birthday",
            pl.when(pl.col("segment") == "subscriber")
            .then(pl.lit('["newsletter"]'))
            .alias("tags"),  # JSON text, as the importers store tags
            pl.when(pl.col("registered"))
            .then(pl.lit("registered"))
            .otherwise(pl.lit("guest"))
            .alias("account_status"),
            "created_at",
        )

    def _store_consents(self, customers: pl.DataFrame) -> pl.DataFrame:
        granted_source = (
            pl.when(pl.col("segment") == "subscriber")
            .then(pl.lit("signup form"))
            .otherwise(pl.lit("checkout"))
        )
        email_granted = customers.filter(pl.col("email_opt_in")).select(
            pl.col("email").alias("customer_key"),
            pl.lit("email").alias("channel"),
            pl.lit("granted").alias("status"),
            granted_source.alias("source"),
            pl.col("created_at").alias("occurred_at"),
        )
        email_withdrawn = customers.filter(pl.col("unsubscribed_at").is_not_null()).select(
            pl.col("email").alias("customer_key"),
            pl.lit("email").alias("channel"),
            pl.lit("withdrawn").alias("status"),
            pl.lit("unsubscribe link").alias("source"),
            pl.max_horizontal("unsubscribed_at", pl.col("created_at") + MICROS_PER_SECOND).alias(
                "occurred_at"
            ),
        )
        sms = customers.filter(pl.col("sms_opt_in")).select(
            pl.col("email").alias("customer_key"),
            pl.lit("sms").alias("channel"),
            pl.lit("granted").alias("status"),
            pl.lit("checkout").alias("source"),
            pl.col("created_at").alias("occurred_at"),
        )
        return pl.concat([email_granted, email_withdrawn, sms])

    def event_ids(self) -> pl.Series:
        """Stable ids (and dedupe keys): the seed and the event's position in generation order."""
        return self.events.select(
            pl.format("sim{}-{}", pl.lit(self.seed), pl.int_range(pl.len())).alias("event_id")
        )["event_id"]

    def visitor_ids(self) -> pl.Series:
        """Anonymous id of every event's visitor."""
        visitor = self.events["visitor"].to_numpy()
        n = int(visitor.max()) + 1 if len(visitor) else 0
        return make_visitor_ids(np.arange(n, dtype=np.int64)).gather(visitor)

    def store_events(self, customers: pl.DataFrame) -> pl.DataFrame:
        return self.events.select(
            _email_of(customers, self.events["person"].to_numpy()).alias("customer_key"),
            self.visitor_ids().alias("anonymous_id"),
            "type",
            "occurred_at",
            "properties",
            self.event_ids().alias("dedupe_key"),
        )

    # -- the truth ------------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        pop = self.population
        orders = self.book.orders
        live = orders.filter(pl.col("status") != "cancelled")
        by_type = self.events.group_by("type").len()
        type_counts = dict(zip(by_type["type"].to_list(), by_type["len"].to_list(), strict=True))
        revenue = int((live["total_minor"] - live["refunded_minor"]).sum())
        return {
            "customers": pop.size,
            "buyers": int((pop.segment != SUBSCRIBER).sum()),
            "shoppers": int((pop.segment == SHOPPER).sum()),
            "replenishers": int((pop.segment == REPLENISHER).sum()),
            "subscribers": int((pop.segment == SUBSCRIBER).sum()),
            "orders": orders.height,
            "guest_orders": int((orders["kind"] == GUEST).sum()),
            "offline_orders": int(orders["pos"].sum()),
            "cancelled_orders": int((orders["status"] == "cancelled").sum()),
            "refunded_orders": int((orders["status"] == "refunded").sum()),
            "partially_refunded_orders": int((orders["status"] == "partially_refunded").sum()),
            "pending_orders": int((orders["status"] == "pending").sum()),
            "lines": self.book.lines.height,
            "products": self.catalogue.frame.height,
            "events": self.events.height,
            "events_by_type": {t: int(type_counts.get(t, 0)) for t in EVENT_TYPES},
            "anonymous_visitors": self.anonymous_visitors,
            "email_subscribers_at_end": int((pop.email_opt_in & np.isnan(pop.unsubscribed)).sum()),
            "sms_subscribers": int(pop.sms_opt_in.sum()),
            "revenue_minor": revenue,
            "currency": self.params.currency,
        }

    def truth_customers(self) -> pl.DataFrame:
        """Per-customer truth: segment, λ, p, ν, alive at the end, and observation window."""
        pop = self.population
        cal = self.calendar
        orders = self.book.orders.filter(pl.col("owner") >= 0)
        n_orders = np.bincount(orders["owner"].to_numpy(), minlength=pop.size)
        first_days = (self.created_at - cal.start_us) / (86_400 * MICROS_PER_SECOND)
        window = cal.cum_weeks[-1] - cal.to_demand_weeks(first_days)
        buyer = pop.segment != SUBSCRIBER
        return pl.DataFrame(
            {
                "external_id": pop.email,
                "segment": pl.Series(SEGMENT_NAMES)[pop.segment],
                "lambda_per_week": pop.lam,
                "dropout_p": pop.dropout,
                "nu": pop.nu,
                "expected_order_value": self.params.p / pop.nu,
                "staple_sku": keep(
                    self.catalogue.frame["sku"].gather(np.maximum(pop.staple, 0)), pop.staple >= 0
                ),
                "first_seen_at": self.created_at,
                "orders": n_orders.astype(np.int64),
                "alive_at_end": keep(pl.Series(self.book.alive), buyer),
                "demand_weeks_observed": keep(pl.Series(window), buyer),
            }
        ).with_columns(pl.col(pl.Float64).fill_nan(None))

    def truth(self) -> dict[str, Any]:
        """Everything later analytics can be checked against (written as truth.json)."""
        p = self.params
        cal = self.calendar
        pop = self.population
        shoppers = pop.segment == SHOPPER
        orders = self.book.orders
        shopper_orders = orders.filter(pl.col("kind") == SHOPPER)
        start = datetime(cal.start.year, cal.start.month, cal.start.day, tzinfo=UTC)
        end = datetime.fromtimestamp(cal.end_us // MICROS_PER_SECOND, tz=UTC)
        catalogue = self.catalogue.frame.select(
            "sku", "name", "category", "price_minor", "lifespan_days"
        ).to_dicts()
        return {
            "generator": "boomerang.simulate",
            "seed": self.seed,
            "period": {
                "start": start.isoformat(),
                "end_exclusive": end.isoformat(),
                "days": cal.days,
            },
            "currency": p.currency,
            "bgnbd": {
                "r": p.r,
                "alpha": p.alpha,
                "a": p.a,
                "b": p.b,
                "time_unit": "weeks",
                "applies_to": "shopper customers (segment 'shopper' in truth_customers.csv)",
                "mean_purchase_rate_per_week": p.r / p.alpha,
                "mean_dropout_probability": p.a / (p.a + p.b),
                "time": "λ is the average weekly rate: purchases run on demand time Λ(t), "
                "which follows seasonality (demand_weeks_observed is T on that clock)",
            },
            "gamma_gamma": {
                "p": p.p,
                "q": p.q,
                "gamma": p.gamma,
                "value": "an order's merchandise value before discounts (sum of quantity x "
                "unit price), currency major units; realised baskets match the drawn value "
                "up to the catalogue's price steps",
                "applies_to": "shopper and guest orders",
                "expected_order_value": p.p * p.gamma / (p.q - 1) if p.q > 1 else None,
            },
            "replenishment": {
                "share_of_buyers": p.replenisher_share,
                "gap_days": "lifespan_days x quantity x LogNormal(0, sigma)",
                "sigma": p.replenish_sigma,
                "double_quantity_share": p.replenish_double_qty,
                "extra_line_share": p.replenish_extra_line,
                "dropout": "Beta(a, b) after each repeat purchase, as for shoppers",
            },
            "acquisition": {
                "growth_per_year": p.acquisition_growth,
                "buyer_share": p.buyer_share,
                "first_purchase": "at acquisition",
            },
            "seasonality": {
                "month_factors": list(p.month_factors),
                "weekday_factors": list(p.weekday_factors),
                "black_friday_factor": p.black_friday_factor,
                "late_december_factor": p.late_december_factor,
                "normalised": "mean 1 over calendar year 2025 (weekday factors: mean 1)",
                "hour_weights": list(p.hour_weights),
            },
            "rates": {
                "guest_order_share": p.guest_order_share,
                "refund_rate": p.refund_rate,
                "partial_refund_share": p.partial_refund_share,
                "cancel_rate": p.cancel_rate,
                "email_opt_in": p.email_opt_in,
                "sms_opt_in": p.sms_opt_in,
                "unsubscribe_rate": p.unsubscribe_rate,
            },
            "params": p.to_dict(),
            "catalogue": catalogue,
            "counts": self.counts(),
            "empirical": {
                "mean_lambda_shoppers": _mean(pop.lam[shoppers]),
                "mean_dropout_buyers": _mean(pop.dropout[pop.segment != SUBSCRIBER]),
                "mean_order_value_shoppers": _mean(
                    shopper_orders["gross_minor"].to_numpy() / 100.0
                ),
                "alive_at_end_share_buyers": _mean(
                    self.book.alive[pop.segment != SUBSCRIBER].astype(np.float64)
                ),
            },
        }


def _email_of(customers: pl.DataFrame, person: I64) -> pl.Series:
    """The (lower-case) email of each person index; null for -1 (guests, visitors)."""
    pool = pl.concat([customers["email"], pl.Series([None], dtype=pl.String)])
    return pool.gather(np.where(person >= 0, person, customers.height)).alias("email")


def _mean(values: NDArray[np.float64]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def simulate_store(
    customers: int, days: int, seed: int, params: SimulationParams | None = None
) -> SimulatedStore:
    """Generate a store: same arguments, same data (numpy PCG64 streams seeded from ``seed``)."""
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    params = params or SimulationParams()
    streams = dict(
        zip(
            STREAMS,
            (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(STREAMS))),
            strict=True,
        )
    )
    cal = Calendar.build(days, params)
    catalogue = build_catalogue(streams["catalogue"], params.products)
    pop = draw_population(streams["people"], customers, cal, catalogue, params)
    purchases = draw_purchases(streams["timing"], pop, cal, catalogue, params)
    book = build_orders(streams["baskets"], pop, cal, catalogue, params, purchases)

    # Customers are created at their first order; subscribers when they sign up.
    offsets = np.array([c.utc_offset for c in CITIES], dtype=np.float64)[pop.city]
    signup = cal.to_micros(apply_daily_rhythm(pop.acquired, offsets, days, hour_profile(params)))
    first_order = np.full(pop.size, np.iinfo(np.int64).max, dtype=np.int64)
    known = book.orders.filter(pl.col("owner") >= 0)
    np.minimum.at(first_order, known["owner"].to_numpy(), known["placed_at"].to_numpy())
    created = np.where(pop.segment == SUBSCRIBER, signup, first_order)

    events, n_anon = build_events(streams["sessions"], pop, cal, catalogue, params, book, created)
    return SimulatedStore(
        seed=seed,
        days=days,
        params=params,
        calendar=cal,
        catalogue=catalogue,
        population=pop,
        book=book,
        created_at=created,
        events=events,
        anonymous_visitors=n_anon,
    )
