"""The simulated people: who they are, when they arrive, and their hidden true parameters.

Why everything is an array: a million customers are drawn in a few numpy calls; the
per-customer truths (λ, p, ν, staple product) are kept so later analytics can be checked
against them customer by customer (truth_customers.csv).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from boomerang.simulate.calendar import Calendar
from boomerang.simulate.catalogue import Catalogue
from boomerang.simulate.geo import (
    CITIES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    STREETS,
    draw_cities,
    draw_phones,
)
from boomerang.simulate.params import SimulationParams
from boomerang.simulate.util import choose, keep

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

SHOPPER, REPLENISHER, SUBSCRIBER = 0, 1, 2
SEGMENT_NAMES = ("shopper", "replenisher", "subscriber")
SHOPIFY_CUSTOMER_BASE = 6_912_000_000_000


def visitor_ids(index: I64) -> pl.Series:
    """Cookie-like anonymous ids: a bijection of the index onto 10-digit numbers (unique)."""
    scrambled = (index.astype(np.int64) * 7_919_813 + 1_234_567_891) % 10_000_000_000
    digits = pl.Series(scrambled).cast(pl.String).str.zfill(10)
    return pl.select(pl.concat_str(pl.lit("v"), pl.lit(digits))).to_series().alias("anonymous_id")


@dataclass(frozen=True)
class Population:
    """One entry per customer (buyers and newsletter subscribers), ordered by arrival."""

    segment: I64
    acquired: F64  # days since the period start (first purchase for buyers)
    city: I64
    lam: F64  # purchases per week while alive (shoppers; NaN otherwise)
    dropout: F64  # probability of dropping out after each repeat purchase (buyers)
    nu: F64  # gamma-gamma rate (buyers); expected order value = p / ν
    favourite: I64  # category index
    staple: I64  # product index of a replenisher's consumable, -1 otherwise
    shopify_id: I64
    first_name: pl.Series
    last_name: pl.Series
    email: pl.Series  # lower-case: the customer's external id
    shown_email: pl.Series  # as typed at checkout (a few with capitals)
    phone: pl.Series  # E.164 or null
    address1: pl.Series
    birthday: pl.Series  # YYYY-MM-DD or null
    email_opt_in: B
    unsubscribed: F64  # days since start, NaN when still subscribed (or never)
    sms_opt_in: B
    registered: B

    @property
    def size(self) -> int:
        return len(self.segment)

    @property
    def utc_offset(self) -> F64:
        return np.array([c.utc_offset for c in CITIES], dtype=np.float64)[self.city]


def draw_population(
    rng: np.random.Generator,
    n: int,
    cal: Calendar,
    catalogue: Catalogue,
    params: SimulationParams,
) -> Population:
    """Arrival times, segments, true parameters and contact details of ``n`` customers."""
    acquired = np.sort(cal.sample_days(rng, n, params.acquisition_growth))
    buyer = rng.random(n) < params.buyer_share
    replenisher = buyer & (rng.random(n) < params.replenisher_share)
    segment = np.where(buyer, np.where(replenisher, REPLENISHER, SHOPPER), SUBSCRIBER)
    segment = segment.astype(np.int64)

    lam = rng.gamma(params.r, 1.0 / params.alpha, size=n)
    lam = np.where(segment == SHOPPER, lam, np.nan)
    dropout = rng.beta(params.a, params.b, size=n)
    dropout = np.where(buyer, dropout, np.nan)
    nu = rng.gamma(params.q, 1.0 / params.gamma, size=n)
    nu = np.where(buyer, nu, np.nan)

    popularity = catalogue.popularity
    favourite = rng.choice(len(popularity), size=n, p=popularity).astype(np.int64)
    consumables = catalogue.consumable_categories
    cons_pop = popularity[consumables] / popularity[consumables].sum()
    staple_cat = consumables[rng.choice(len(consumables), size=n, p=cons_pop)]
    staple = np.where(replenisher, catalogue.random_products(rng, staple_cat), -1)
    favourite = np.where(replenisher, staple_cat, favourite).astype(np.int64)

    city = draw_cities(rng, n, params.countries)
    shopify_id = SHOPIFY_CUSTOMER_BASE + np.cumsum(rng.integers(50_000, 3_000_000, size=n))

    first = pl.Series(FIRST_NAMES)[rng.integers(0, len(FIRST_NAMES), size=n)]
    last = pl.Series(LAST_NAMES)[rng.integers(0, len(LAST_NAMES), size=n)]
    domain = pl.Series(EMAIL_DOMAINS)[rng.integers(0, len(EMAIL_DOMAINS), size=n)]
    names = pl.DataFrame({"first": first, "last": last, "domain": domain, "k": np.arange(1, n + 1)})
    shown = names.select(
        pl.concat_str(
            pl.col("first"),
            pl.lit("."),
            pl.col("last"),
            pl.col("k").cast(pl.String),
            pl.lit("@"),
            pl.col("domain"),
        ).alias("e")
    )["e"]
    email = shown.str.to_lowercase().alias("email")
    capitals = rng.random(n) < params.mixed_case_email_share
    shown = choose(capitals, shown, email).alias("shown_email")

    has_phone = buyer & (rng.random(n) < params.phone_share)
    phone = keep(draw_phones(rng, city).alias("phone"), has_phone)
    sms_given_phone = min(1.0, params.sms_opt_in / max(params.phone_share, 1e-9))
    sms_opt_in = has_phone & (rng.random(n) < sms_given_phone)

    email_opt_in = np.where(buyer, rng.random(n) < params.email_opt_in, True)
    leaves = email_opt_in & (rng.random(n) < params.unsubscribe_rate)
    unsubscribed = np.where(leaves, acquired + rng.random(n) * (cal.days - acquired), np.nan)

    street_no = rng.integers(1, 1000, size=n)
    street = pl.Series(STREETS)[rng.integers(0, len(STREETS), size=n)]
    address1 = pl.DataFrame({"no": street_no, "street": street}).select(
        pl.concat_str(pl.col("no").cast(pl.String), pl.lit(" "), pl.col("street")).alias("a")
    )["a"]
    born = pl.Series(rng.integers(-7305, 12_784, size=n), dtype=pl.Int32).cast(pl.Date)
    birthday = keep(born.cast(pl.String).alias("birthday"), rng.random(n) < params.birthday_share)

    return Population(
        segment=segment,
        acquired=acquired,
        city=city,
        lam=lam,
        dropout=dropout,
        nu=nu,
        favourite=favourite,
        staple=staple.astype(np.int64),
        shopify_id=shopify_id.astype(np.int64),
        first_name=first,
        last_name=last,
        email=email,
        shown_email=shown,
        phone=phone,
        address1=address1,
        birthday=birthday,
        email_opt_in=email_opt_in,
        unsubscribed=unsubscribed,
        sms_opt_in=sms_opt_in,
        registered=buyer & (rng.random(n) < params.account_share),
    )
