"""Orders: when each customer buys (BG/NBD or replenishment), what, and how it ends.

Why no per-customer loop: purchase times come from order statistics (the first c of n
uniform points on a customer's window are cumulative exponentials over a gamma total), so
every customer's history is drawn in a handful of array operations over all orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl
from numpy.typing import NDArray

from boomerang.simulate.calendar import (
    MICROS_PER_SECOND,
    SECONDS_PER_DAY,
    Calendar,
    apply_daily_rhythm,
    black_friday,
    hour_profile,
)
from boomerang.simulate.catalogue import CATEGORIES, Catalogue
from boomerang.simulate.customers import REPLENISHER, SHOPPER, Population
from boomerang.simulate.geo import CITIES, STORE_CITY, draw_cities
from boomerang.simulate.params import SimulationParams
from boomerang.simulate.util import expand, group_cumsum, round_half_even

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

GUEST = 3
FIRST_ORDER_NUMBER = 1001
SHOPIFY_ORDER_BASE = 5_480_000_000_000
MIN_LINE_VALUE = 15.0  # a basket gets at most one line per this much of its target value
STATUSES = ("paid", "cancelled", "partially_refunded", "refunded", "pending")
FINANCIAL_STATUSES = ("paid", "voided", "partially_refunded", "refunded", "pending")
DISCOUNT_CODES = (None, "WELCOME10", "HOLIDAY20")
DISCOUNT_RATES = (0.0, 0.10, 0.20)
SHIPPING_METHODS = (
    None,
    "Express Shipping",
    "Free Shipping",
    "Standard Shipping",
    "International Shipping",
)


@dataclass(frozen=True)
class Purchases:
    """Purchase moments before basket building, in no particular order."""

    owner: I64  # customer index, -1 for a guest
    kind: I64  # SHOPPER, REPLENISHER or GUEST
    t: F64  # days since the period start
    seq: I64  # 0 for a customer's first order, then 1, 2, ... (guests: 0)
    quantity: I64  # staple quantity (replenishers), 0 otherwise
    alive: B  # per customer: still active at the end of the period


def shopper_purchases(
    rng: np.random.Generator, pop: Population, cal: Calendar, who: I64
) -> tuple[I64, F64, I64, B]:
    """BG/NBD histories: first purchase at arrival, then Poisson(λ) in demand time until dropout.

    Returns (owner, time in days, seq, alive-at-end per customer in ``who``); each customer's
    orders are consecutive and in time order.
    """
    t0 = pop.acquired[who]
    tau0 = cal.to_demand_weeks(t0)
    window = cal.cum_weeks[-1] - tau0
    lam = pop.lam[who]
    n = rng.poisson(lam * window)
    drop_after = rng.geometric(np.clip(pop.dropout[who], 1e-12, 1.0))
    repeats = np.minimum(n, drop_after)
    alive = n < drop_after
    # Order statistics of n uniforms: U_(k) = S_k / S_(n+1), S_(n+1) = S_c + Gamma(n - c + 1),
    # with S_k the running sum of unit exponentials. Slot 0 of each customer is the first order.
    member, seq = expand(repeats + 1)
    gaps = np.where(seq > 0, rng.exponential(size=len(member)), 0.0)
    partial = group_cumsum(gaps, repeats + 1)
    total = np.bincount(member, weights=gaps, minlength=len(who)) + rng.gamma(n - repeats + 1.0)
    tau = tau0[member] + window[member] * partial / total[member]
    return who[member], cal.from_demand_weeks(tau), seq, alive


def replenisher_purchases(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    catalogue: Catalogue,
    params: SimulationParams,
    who: I64,
) -> tuple[I64, F64, I64, I64, B]:
    """Reorders of one consumable: the next order comes when the last one runs out.

    Gap = lifespan × quantity × LogNormal(0, σ) days; after each repeat purchase the customer
    drops out with probability p, as in BG/NBD. Returns (owner, t, seq, quantity, alive).
    """
    t0 = pop.acquired[who]
    life = catalogue.lifespan[pop.staple[who]].astype(np.float64)
    drop_after = rng.geometric(np.clip(pop.dropout[who], 1e-12, 1.0))
    room = np.floor((cal.days - t0) / (0.45 * life)).astype(np.int64) + 1
    candidates = np.minimum(drop_after, room) + 1  # the first order and its repeats
    member, position = expand(candidates)
    qty = 1 + (rng.random(len(member)) < params.replenish_double_qty).astype(np.int64)
    previous_qty = np.concatenate([[1], qty[:-1]])
    jitter = rng.lognormal(0.0, params.replenish_sigma, size=len(member))
    gap = np.where(position > 0, life[member] * previous_qty * jitter, 0.0)
    t = t0[member] + group_cumsum(gap, candidates)
    inside = t < cal.days
    repeats_seen = np.bincount(member[inside], minlength=len(who)) - 1
    alive = repeats_seen < drop_after
    return who[member[inside]], t[inside], position[inside], qty[inside], alive


def draw_purchases(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    catalogue: Catalogue,
    params: SimulationParams,
) -> Purchases:
    """All purchase moments: shoppers, replenishers, then guest checkouts on top."""
    shoppers = np.flatnonzero(pop.segment == SHOPPER)
    repl = np.flatnonzero(pop.segment == REPLENISHER)
    s_owner, s_t, s_seq, s_alive = shopper_purchases(rng, pop, cal, shoppers)
    r_owner, r_t, r_seq, r_qty, r_alive = replenisher_purchases(
        rng, pop, cal, catalogue, params, repl
    )
    customer_orders = len(s_owner) + len(r_owner)
    share = params.guest_order_share
    guests = round(customer_orders * share / (1.0 - share)) if share < 1 else 0
    g_t = cal.sample_days(rng, guests, params.acquisition_growth)
    alive = np.zeros(pop.size, dtype=np.bool_)
    alive[shoppers] = s_alive
    alive[repl] = r_alive
    return Purchases(
        owner=np.concatenate([s_owner, r_owner, np.full(guests, -1, dtype=np.int64)]),
        kind=np.concatenate(
            [
                np.full(len(s_owner), SHOPPER, dtype=np.int64),
                np.full(len(r_owner), REPLENISHER, dtype=np.int64),
                np.full(guests, GUEST, dtype=np.int64),
            ]
        ),
        t=np.concatenate([s_t, r_t, g_t]),
        seq=np.concatenate([s_seq, r_seq, np.zeros(guests, np.int64)]),
        quantity=np.concatenate(
            [np.zeros(len(s_owner), np.int64), r_qty, np.zeros(guests, np.int64)]
        ),
        alive=alive,
    )


@dataclass(frozen=True)
class OrderBook:
    """Orders (numbered by time) and their lines, with everything the exports need."""

    orders: pl.DataFrame
    lines: pl.DataFrame  # order_idx, line_no, product, quantity, unit_price_minor, discount_minor
    alive: B  # per customer


def _holiday_days(cal: Calendar) -> B:
    """Days inside a Black Friday .. December 20 promotion window."""
    flags = np.zeros(cal.days, dtype=np.bool_)
    for i in range(cal.days):
        d = cal.start + timedelta(days=i)
        bf = black_friday(d.year)
        flags[i] = bf <= d and (d.month, d.day) <= (12, 20)
    return flags


def build_orders(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    catalogue: Catalogue,
    params: SimulationParams,
    purchases: Purchases,
) -> OrderBook:
    """Number the purchases by time, fill their baskets, and price, tax and settle them.

    Rows stay in generation order (each customer's orders together); ``number`` (#1001, ...)
    follows the time order, as a shop's order names do.
    """
    n_orders = len(purchases.t)
    owner, kind, seq = purchases.owner, purchases.kind, purchases.seq
    guest = owner < 0
    city = pop.city[np.maximum(owner, 0)]
    city[guest] = draw_cities(rng, int(guest.sum()), params.countries)
    offsets = np.array([c.utc_offset for c in CITIES], dtype=np.float64)
    t = apply_daily_rhythm(purchases.t, offsets[city], cal.days, hour_profile(params))
    placed = cal.to_micros(t)
    # Ties keep generation order: the key is unique, so any sort gives the same numbers.
    key = (placed - cal.start_us) // MICROS_PER_SECOND * n_orders + np.arange(n_orders)
    rank = np.empty(n_orders, dtype=np.int64)
    rank[pl.Series(key).arg_sort().to_numpy()] = np.arange(n_orders)

    pos_share = np.where(guest, params.guest_pos_share, params.customer_pos_share)
    pos = rng.random(n_orders) < pos_share
    city = np.where(pos, STORE_CITY, city)

    lines = _baskets(rng, pop, catalogue, params, owner, kind, purchases.quantity)
    orders, line_discount = _settle(
        rng, pop, cal, params, lines, owner, kind, seq, t, placed, city, pos, rank
    )
    lines = lines.with_columns(pl.Series("discount_minor", line_discount, pl.Int64))
    return OrderBook(orders=orders, lines=lines, alive=purchases.alive)


def _baskets(
    rng: np.random.Generator,
    pop: Population,
    catalogue: Catalogue,
    params: SimulationParams,
    owner: I64,
    kind: I64,
    staple_qty: I64,
) -> pl.DataFrame:
    """Lines per order: value-targeted picks (gamma-gamma) or a replenisher's staple.

    Lines are laid out order by order from the start (staple first), so no sort is needed.
    """
    n_orders = len(owner)
    guest = owner < 0
    safe_owner = np.maximum(owner, 0)
    # Guests draw their own ν: they are one-off buyers from the same population.
    nu = pop.nu[safe_owner]
    nu[guest] = rng.gamma(params.q, 1.0 / params.gamma, size=int(guest.sum()))
    value = rng.standard_gamma(params.p, size=n_orders) / nu  # Gamma(p, rate ν)
    repl = kind == REPLENISHER
    extra = rng.poisson(params.extra_lines_mean, size=n_orders)
    cap = np.clip(np.floor(value / MIN_LINE_VALUE), 1, params.max_lines).astype(np.int64)
    repl_extra = (rng.random(n_orders) < params.replenish_extra_line).astype(np.int64)
    n_picked = np.where(repl, repl_extra, np.minimum(1 + extra, cap))
    n_lines = n_picked + repl

    order_idx, position = expand(n_lines)
    staple = repl[order_idx] & (position == 0)
    pick = np.flatnonzero(~staple)
    member = order_idx[pick]
    weight = rng.gamma(2.0, size=len(pick))
    weight_sum = np.bincount(member, weights=weight, minlength=n_orders)
    target = value[member] * weight / weight_sum[member]
    favourite = np.where(guest | repl, -1, pop.favourite[safe_owner])[member]
    popular = np.searchsorted(np.cumsum(catalogue.popularity), rng.random(len(pick)))
    popular = np.minimum(popular, len(CATEGORIES) - 1)
    use_fav = (favourite >= 0) & (rng.random(len(pick)) < params.favourite_category_share)
    category = np.where(use_fav, favourite, popular)
    # Quantity 2 (or 3) is likelier for consumables.
    consumable = np.array([bool(c.lifespans) for c in CATEGORIES])
    two_or_more = np.where(consumable, 0.25, 0.08)[category]
    three = np.where(consumable, 0.05, 0.0)[category]
    u = rng.random(len(pick))
    qty = 1 + (u < two_or_more) + (u < three)
    top = catalogue.price[catalogue.category_start + catalogue.category_count - 1][category]
    qty = np.maximum(qty, np.ceil(target / top)).astype(np.int64)

    product = np.empty(len(order_idx), dtype=np.int64)
    quantity = np.empty(len(order_idx), dtype=np.int64)
    product[pick] = catalogue.nearest(rng, category, target / qty)
    quantity[pick] = qty
    staple_rows = np.flatnonzero(staple)
    product[staple_rows] = pop.staple[owner[order_idx[staple_rows]]]
    quantity[staple_rows] = staple_qty[order_idx[staple_rows]]

    # The same product picked twice in one basket becomes one line with the summed quantity.
    first = np.arange(len(order_idx))
    basket = order_idx * catalogue.frame.height + product
    rows = np.flatnonzero(position >= 1)  # rows with at least k lines before them
    for k in range(1, int(n_lines.max(initial=1))):
        rows = rows[position[rows] >= k]
        same = rows[basket[rows] == basket[rows - k]]
        first[same] = same - k
    if (first != np.arange(len(first))).any():
        quantity = np.bincount(first, weights=quantity, minlength=len(first)).astype(np.int64)
        kept = first == np.arange(len(first))
        order_idx, product, quantity = order_idx[kept], product[kept], quantity[kept]
        _, position = expand(np.bincount(order_idx, minlength=n_orders))
    prices = catalogue.frame["price_minor"].to_numpy()
    return pl.DataFrame(
        {
            "order_idx": order_idx,
            "line_no": position + 1,
            "product": product,
            "quantity": quantity,
            "unit_price_minor": prices[product].astype(np.int64),
        }
    )


def _settle(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    params: SimulationParams,
    lines: pl.DataFrame,
    owner: I64,
    kind: I64,
    seq: I64,
    t: F64,
    placed: I64,
    city: I64,
    pos: B,
    rank: I64,
) -> tuple[pl.DataFrame, I64]:
    """Discounts, shipping, tax, totals, then payment, refund, cancellation and fulfilment.

    Returns the orders and each line's discount (aligned with ``lines``).
    """
    n = len(owner)
    guest = owner < 0
    line_order = lines["order_idx"].to_numpy()
    gross_line = lines["quantity"].to_numpy() * lines["unit_price_minor"].to_numpy()

    holiday = _holiday_days(cal)[np.clip(np.floor(t).astype(np.int64), 0, cal.days - 1)]
    welcome = (~guest) & (seq == 0) & (rng.random(n) < params.welcome_code_share)
    festive = holiday & (rng.random(n) < params.holiday_code_share)
    code = np.where(festive, 2, np.where(welcome, 1, 0))
    code = np.where(pos, 0, code)
    rate = np.array(DISCOUNT_RATES)[code]
    line_discount = round_half_even(gross_line * rate[line_order])
    discount = np.bincount(line_order, weights=line_discount, minlength=n).astype(np.int64)
    gross = np.bincount(line_order, weights=gross_line, minlength=n).astype(np.int64)
    subtotal = gross - discount

    domestic = np.array([c.country == "US" for c in CITIES])[city]
    express = (~pos) & (rng.random(n) < params.express_share)
    free = subtotal >= round(params.free_shipping_over * 100)
    cents = {
        k: round(getattr(params, k) * 100)
        for k in ("shipping_express", "shipping_domestic", "shipping_international")
    }
    shipping = np.select(
        [pos, express, free, domestic],
        [0, cents["shipping_express"], 0, cents["shipping_domestic"]],
        cents["shipping_international"],
    ).astype(np.int64)
    method = np.select([pos, express, free, domestic], [0, 1, 2, 3], 4)
    tax_rate = np.array([c.tax_rate for c in CITIES])[city]
    tax = round_half_even(subtotal * tax_rate)
    total = subtotal + shipping + tax

    # Outcomes: cancelled, refunded (full or partial), pending (only very recent), paid.
    u = rng.random(n)
    age_days = cal.days - t
    cancelled = u < params.cancel_rate
    refunded = (~cancelled) & (u < params.cancel_rate + params.refund_rate) & (age_days > 3)
    partial = refunded & (rng.random(n) < params.partial_refund_share)
    pending = (~cancelled) & (~refunded) & (age_days < params.pending_days)
    pending &= rng.random(n) < params.pending_share
    refund_share = rng.uniform(0.15, 0.6, size=n)
    refund = np.where(partial, round_half_even(total * refund_share), np.where(refunded, total, 0))
    refund = np.minimum(refund, total)
    status = np.select([cancelled, partial, refunded, pending], [1, 2, 3, 4], 0)
    end = cal.end_us - MICROS_PER_SECOND
    seconds = MICROS_PER_SECOND
    cancel_at = np.minimum(placed + round_half_even(rng.exponential(3 * 3600, n)) * seconds, end)
    paid = ~(cancelled | pending)
    paid_at = placed + rng.integers(2, 60, size=n) * seconds
    ship_delay = rng.integers(SECONDS_PER_DAY // 2, 3 * SECONDS_PER_DAY, size=n) * seconds
    fulfilled_at = np.where(pos, paid_at, placed + ship_delay)  # in store: handed over at once
    fulfilled = paid & (fulfilled_at <= end)

    safe = np.maximum(owner, 0)
    opted = (~guest) & pop.email_opt_in[safe]
    unsub = pop.unsubscribed[safe]
    accepts = opted & (np.isnan(unsub) | (unsub > t))

    frame = pl.DataFrame(
        {
            "order_idx": np.arange(n, dtype=np.int64),
            "number": FIRST_ORDER_NUMBER + rank,
            "shopify_id": SHOPIFY_ORDER_BASE + rank * 1_013,
            "owner": owner,
            "kind": kind,
            "seq": seq,
            "placed_at": placed,
            "city": city,
            "pos": pos,
            "gross_minor": gross,
            "discount_minor": discount,
            "subtotal_minor": subtotal,
            "shipping_minor": shipping,
            "tax_minor": tax,
            "total_minor": total,
            "refunded_minor": refund.astype(np.int64),
            "status": pl.Series(STATUSES)[status],
            "financial_status": pl.Series(FINANCIAL_STATUSES)[status],
            "discount_code": pl.Series(DISCOUNT_CODES)[code],
            "shipping_method": pl.Series(SHIPPING_METHODS)[method],
            "accepts_marketing": accepts,
            "cancelled_at": cancel_at,
            "paid_at": paid_at,
            "fulfilled_at": fulfilled_at,
            "is_cancelled": cancelled,
            "is_paid": paid,
            "is_fulfilled": fulfilled,
        }
    ).with_columns(
        pl.format("#{}", pl.col("number")).alias("name"),
        pl.when(pl.col("is_cancelled")).then(pl.col("cancelled_at")),
        pl.when(pl.col("is_paid")).then(pl.col("paid_at")),
        pl.when(pl.col("is_fulfilled")).then(pl.col("fulfilled_at")),
    )
    return frame.drop("is_cancelled", "is_paid", "is_fulfilled"), line_discount
