"""Site and email events: purchase sessions, abandoned carts and browsing, sign-ups, opens.

Why sessions are built around orders: every online order is preceded by a visit, views of
what was bought (plus a few other products), add-to-cart per line and a started checkout,
so funnels and abandonment computed from events agree with the orders. Abandoned sessions
happen in the days before purchases and after a buyer's last order; visitors who never buy
only browse, and some of them sign up for the newsletter (they become customers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numpy.typing import NDArray

from boomerang.domain.enums import EventType
from boomerang.simulate.calendar import MICROS_PER_SECOND, SECONDS_PER_DAY, Calendar
from boomerang.simulate.catalogue import CATEGORIES, Catalogue
from boomerang.simulate.customers import SUBSCRIBER, Population
from boomerang.simulate.geo import draw_cities
from boomerang.simulate.orders import OrderBook
from boomerang.simulate.params import SimulationParams
from boomerang.simulate.util import expand

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

EVENT_TYPES = (
    EventType.VISIT.value,
    EventType.PRODUCT_VIEWED.value,
    EventType.ADDED_TO_CART.value,
    EventType.CHECKOUT_STARTED.value,
    EventType.ORDER_PLACED.value,
    EventType.SIGNED_UP.value,
    EventType.EMAIL_OPENED.value,
)
VISIT, VIEW, CART, CHECKOUT, PLACED, SIGNUP, OPENED = range(len(EVENT_TYPES))
BROWSE, CART_ABANDON, CHECKOUT_ABANDON = 0, 1, 2
TRAFFIC_SOURCES = ("direct", "google", "email", "instagram", "facebook", "tiktok")
TRAFFIC_WEIGHTS = (0.32, 0.30, 0.14, 0.12, 0.07, 0.05)
SECOND = MICROS_PER_SECOND
MINUTE = 60 * SECOND
DAY = SECONDS_PER_DAY * SECOND
NEWSLETTER_HOUR_UTC = 14
SIGNUP_AFTER = 16 * MINUTE  # a sign-up closes its visit (visits last at most 15 minutes)


@dataclass
class EventColumns:
    """Events gathered piece by piece (columns are lists of arrays, one per piece)."""

    person: list[I64] = field(default_factory=list)  # customer index, -1 unknown
    visitor: list[I64] = field(default_factory=list)  # anonymous visitor index
    kind: list[I64] = field(default_factory=list)  # index into EVENT_TYPES
    at: list[I64] = field(default_factory=list)  # epoch micros, whole seconds
    city: list[I64] = field(default_factory=list)  # for the local time in events.jsonl
    props: list[pl.Series] = field(default_factory=list)  # JSON text

    def add(
        self, person: I64, visitor: I64, kind: int | I64, at: I64, city: I64, props: pl.Series
    ) -> None:
        n = len(at)
        self.person.append(person)
        self.visitor.append(visitor)
        self.kind.append(np.broadcast_to(np.asarray(kind, dtype=np.int64), (n,)).copy())
        self.at.append((at // SECOND) * SECOND)
        self.city.append(city)
        self.props.append(props.cast(pl.String))

    def frame(self) -> pl.DataFrame:
        """All events in generation order (writers sort by time when they need to)."""
        return pl.DataFrame(
            {
                "person": np.concatenate(self.person),
                "visitor": np.concatenate(self.visitor),
                "type": pl.Series(EVENT_TYPES)[np.concatenate(self.kind)],
                "occurred_at": np.concatenate(self.at),
                "city": np.concatenate(self.city),
                "properties": pl.concat(self.props),
            }
        )


def _const(text: str, n: int) -> pl.Series:
    return pl.Series([text], dtype=pl.String).gather(np.zeros(n, dtype=np.int64))


def _json_fields(**columns: pl.Series) -> pl.Series:
    """One JSON object per row; keys ending in ``_raw`` are numbers, the others strings.

    The values are ours (SKUs, categories, amounts): they never contain quotes or backslashes.
    """
    parts: list[pl.Expr] = []
    for i, key in enumerate(columns):
        raw = key.endswith("_raw")
        opener = "{" if i == 0 else ","
        parts.append(pl.lit(f'{opener}"{key.removesuffix("_raw")}":' + ("" if raw else '"')))
        parts.append(pl.col(key).cast(pl.String))
        if not raw:
            parts.append(pl.lit('"'))
    parts.append(pl.lit("}"))
    frame = pl.DataFrame({k: v.alias(k) for k, v in columns.items()})
    return frame.select(pl.concat_str(parts).alias("properties"))["properties"]


def product_view_props(catalogue: Catalogue) -> pl.Series:
    """{"sku":..,"category":..} for every product, gathered per view."""
    frame = catalogue.frame
    return _json_fields(sku=frame["sku"], category=frame["category"])


@dataclass(frozen=True)
class SessionPlan:
    """Sessions that bought nothing: who, when, and how far they got."""

    person: I64
    visitor: I64
    start: I64  # micros
    depth: I64  # BROWSE, CART_ABANDON or CHECKOUT_ABANDON
    favourite: I64  # category index or -1
    city: I64
    signup: B  # ends with a newsletter sign-up


def _depths(rng: np.random.Generator, n: int, cart: float, checkout: float) -> I64:
    u = rng.random(n)
    deep = rng.random(n) < checkout
    return np.where(u < cart, np.where(deep, CHECKOUT_ABANDON, CART_ABANDON), BROWSE).astype(
        np.int64
    )


def _browse_events(
    rng: np.random.Generator,
    plan: SessionPlan,
    catalogue: Catalogue,
    params: SimulationParams,
    out: EventColumns,
    view_props: pl.Series,
) -> None:
    n = len(plan.start)
    if not n:
        return
    length = rng.uniform(1.0, 15.0, size=n) * MINUTE
    out.add(plan.person, plan.visitor, VISIT, plan.start, plan.city, _visit_props(rng, n))
    views = 1 + rng.poisson(params.extra_views_mean, size=n)
    member, position = expand(views)
    fav = plan.favourite[member]
    use_fav = (fav >= 0) & (rng.random(len(member)) < params.favourite_category_share)
    popular = rng.choice(len(CATEGORIES), size=len(member), p=catalogue.popularity)
    product = catalogue.random_products(rng, np.where(use_fav, fav, popular).astype(np.int64))
    frac = (position + rng.random(len(member))) / (views[member] + 2.0)
    at = plan.start[member] + (frac * length[member]).astype(np.int64)
    out.add(
        plan.person[member], plan.visitor[member], VIEW, at, plan.city[member], view_props[product]
    )
    # The last product viewed is the one put in the cart.
    last = np.cumsum(views) - 1
    carted = plan.depth >= CART_ABANDON
    rows = np.flatnonzero(carted)
    cart_product = product[last[rows]]
    cart_at = plan.start[rows] + (length[rows] * (views[rows] + 0.5) / (views[rows] + 2.0)).astype(
        np.int64
    )
    sku = catalogue.frame["sku"][cart_product]
    out.add(
        plan.person[rows],
        plan.visitor[rows],
        CART,
        cart_at,
        plan.city[rows],
        _json_fields(sku=sku, quantity_raw=_const("1", len(rows))),
    )
    checkout = np.flatnonzero(plan.depth >= CHECKOUT_ABANDON)
    value = pl.Series(catalogue.frame["price_minor"].to_numpy()[product[last[checkout]]])
    out.add(
        plan.person[checkout],
        plan.visitor[checkout],
        CHECKOUT,
        plan.start[checkout] + length[checkout].astype(np.int64),
        plan.city[checkout],
        _json_fields(
            cart_value_raw=_amounts(value), currency=_const(params.currency, len(checkout))
        ),
    )
    signups = np.flatnonzero(plan.signup)
    out.add(
        plan.person[signups],
        plan.visitor[signups],
        SIGNUP,
        plan.start[signups] + SIGNUP_AFTER,
        plan.city[signups],
        _const('{"list":"newsletter"}', len(signups)),
    )


def _amounts(minor: pl.Series) -> pl.Series:
    """Cents as a JSON number in its shortest form (18.0, 123.45): what JSON tools re-emit."""
    return (minor / 100).cast(pl.String)


def _visit_props(rng: np.random.Generator, n: int) -> pl.Series:
    source = rng.choice(
        len(TRAFFIC_SOURCES), size=n, p=np.array(TRAFFIC_WEIGHTS) / sum(TRAFFIC_WEIGHTS)
    )
    texts = pl.Series([f'{{"source":"{s}"}}' for s in TRAFFIC_SOURCES])
    return texts[source]


def _purchase_sessions(
    rng: np.random.Generator,
    pop: Population,
    book: OrderBook,
    catalogue: Catalogue,
    params: SimulationParams,
    visitor_of_order: I64,
    tracked: B,
    out: EventColumns,
    view_props: pl.Series,
) -> None:
    """visit -> views -> add to cart per line -> checkout started -> order placed."""
    orders = book.orders
    rows = np.flatnonzero(tracked)
    placed = orders["placed_at"].to_numpy()[rows]
    person = orders["owner"].to_numpy()[rows]
    city = orders["city"].to_numpy()[rows]
    visitor = visitor_of_order[rows]
    n = len(rows)
    length = (rng.uniform(3.0, 25.0, size=n) * MINUTE).astype(np.int64)
    start = placed - length
    out.add(person, visitor, VISIT, start, city, _visit_props(rng, n))

    line_order = book.lines["order_idx"].to_numpy()
    session_of_order = np.full(orders.height, -1, dtype=np.int64)
    session_of_order[rows] = np.arange(n)
    line_session = session_of_order[line_order]
    keep = line_session >= 0
    ls = line_session[keep]
    product = book.lines["product"].to_numpy()[keep]
    qty = book.lines["quantity"].to_numpy()[keep]
    view_frac = rng.uniform(0.05, 0.6, size=len(ls))
    view_at = start[ls] + (view_frac * length[ls]).astype(np.int64)
    out.add(person[ls], visitor[ls], VIEW, view_at, city[ls], view_props[product])
    cart_at = view_at + (rng.uniform(0.01, 0.1, size=len(ls)) * length[ls]).astype(np.int64)
    sku = catalogue.frame["sku"][product]
    out.add(
        person[ls],
        visitor[ls],
        CART,
        cart_at,
        city[ls],
        _json_fields(sku=sku, quantity_raw=pl.Series(qty)),
    )

    extra = rng.poisson(params.extra_views_mean, size=n)
    member, _ = expand(extra)
    fav = np.where(person >= 0, pop.favourite[np.maximum(person, 0)], -1)[member]
    use_fav = (fav >= 0) & (rng.random(len(member)) < params.favourite_category_share)
    popular = rng.choice(len(CATEGORIES), size=len(member), p=catalogue.popularity)
    seen = catalogue.random_products(rng, np.where(use_fav, fav, popular).astype(np.int64))
    seen_at = start[member] + (rng.uniform(0.05, 0.8, size=len(member)) * length[member]).astype(
        np.int64
    )
    out.add(person[member], visitor[member], VIEW, seen_at, city[member], view_props[seen])

    gross = pl.Series(orders["gross_minor"].to_numpy()[rows])
    out.add(
        person,
        visitor,
        CHECKOUT,
        start + (0.85 * length).astype(np.int64),
        city,
        _json_fields(cart_value_raw=_amounts(gross), currency=_const(params.currency, n)),
    )
    names = orders["number"].gather(rows).cast(pl.String)
    out.add(
        person,
        visitor,
        PLACED,
        placed,
        city,
        _json_fields(order=pl.select(pl.concat_str(pl.lit("#"), pl.lit(names))).to_series()),
    )


def _email_opens(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    params: SimulationParams,
    created: I64,
    alive: B,
    out: EventColumns,
) -> None:
    """Newsletter opens by subscribed customers, more often while they are still buying."""
    every = max(1, params.newsletter_every_days)
    first_tuesday = (1 - cal.start.weekday()) % 7
    send_day = np.arange(first_tuesday, cal.days, every, dtype=np.int64)
    send_at = cal.start_us + send_day * DAY + NEWSLETTER_HOUR_UTC * 3600 * SECOND
    subscribed = np.flatnonzero(pop.email_opt_in)
    since = created[subscribed]
    until_days = np.where(
        np.isnan(pop.unsubscribed[subscribed]), cal.days, pop.unsubscribed[subscribed]
    )
    until = cal.start_us + (until_days * DAY).astype(np.int64)
    lo = np.searchsorted(send_at, since, side="right")
    hi = np.searchsorted(send_at, until, side="left")
    sends = np.maximum(hi - lo, 0)
    segment = pop.segment[subscribed]
    rate = np.where(
        segment == SUBSCRIBER,
        params.open_rate_subscriber,
        np.where(alive[subscribed], params.open_rate_active, params.open_rate_lapsed),
    )
    opens = rng.binomial(sends, rate)
    member, _ = expand(opens)
    campaign = lo[member] + (rng.random(len(member)) * sends[member]).astype(np.int64)
    at = send_at[campaign] + (rng.exponential(6 * 3600, size=len(member)) * SECOND).astype(np.int64)
    inside = at < cal.end_us
    who = subscribed[member[inside]]
    dates = (np.datetime64(cal.start.isoformat()) + send_day.astype("timedelta64[D]")).astype(str)
    names = pl.Series([f'{{"campaign":"newsletter-{d}"}}' for d in dates.tolist()])
    out.add(who, who, OPENED, at[inside], pop.city[who], names[campaign[inside]])


def build_events(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    catalogue: Catalogue,
    params: SimulationParams,
    book: OrderBook,
    created: I64,
) -> tuple[pl.DataFrame, int]:
    """All events (in generation order) and how many anonymous visitors there were.

    Columns: person (customer index or -1), visitor (anonymous visitor index), type,
    occurred_at (micros), city, properties (JSON text). Customers' visitor index is their own
    index; guest checkouts and anonymous visitors are numbered after them.
    """
    out = EventColumns()
    view_props = product_view_props(catalogue)
    n_customers = pop.size
    orders = book.orders
    owner = orders["owner"].to_numpy()
    guest = owner < 0
    n_guests = int(guest.sum())
    visitor_of_order = owner.copy()
    visitor_of_order[guest] = n_customers + np.arange(n_guests)
    online = ~orders["pos"].to_numpy()
    track = rng.random(orders.height) < params.tracking_rate
    _purchase_sessions(
        rng, pop, book, catalogue, params, visitor_of_order, online & track, out, view_props
    )

    # Abandoned sessions in the days before a customer's online order.
    cust_online = np.flatnonzero(online & ~guest)
    k = rng.poisson(params.abandoned_sessions_per_order, size=len(cust_online))
    member, _ = expand(k)
    src = cust_online[member]
    placed = orders["placed_at"].to_numpy()
    start = (
        placed[src] - (rng.exponential(5.0, size=len(src)) * DAY).astype(np.int64) - 3600 * SECOND
    )
    plans = [
        _plan(rng, pop, params, owner[src], start, cal, signup=False),
    ]
    # Visits after each buyer's last order (some still add to cart: abandoned carts).
    buyers = np.flatnonzero(pop.segment != SUBSCRIBER)
    last = np.full(n_customers, -1, dtype=np.int64)
    np.maximum.at(last, owner[~guest], placed[~guest])
    trailing = rng.poisson(params.trailing_sessions_mean, size=len(buyers))
    member, _ = expand(trailing)
    who = buyers[member]
    start = last[who] + (rng.exponential(20.0, size=len(who)) * DAY).astype(np.int64)
    plans.append(_plan(rng, pop, params, who, start, cal, signup=False))
    # Subscribers: the sign-up visit, then occasional browsing.
    subs = np.flatnonzero(pop.segment == SUBSCRIBER)
    plans.append(_plan(rng, pop, params, subs, created[subs] - SIGNUP_AFTER, cal, signup=True))
    later = rng.poisson(params.subscriber_sessions_mean, size=len(subs))
    member, _ = expand(later)
    who = subs[member]
    frac = rng.random(len(who))
    start = created[who] + (frac * (cal.end_us - created[who])).astype(np.int64)
    plans.append(_plan(rng, pop, params, who, start, cal, signup=False))
    for plan in plans:
        _browse_events(
            rng, _tracked(rng, plan, params.tracking_rate), catalogue, params, out, view_props
        )

    # Visitors who never buy nor sign up.
    n_anon = round(params.anonymous_visitors_per_customer * n_customers)
    sessions = 1 + rng.poisson(0.3, size=n_anon)
    member, position = expand(sessions)
    first = cal.to_micros(cal.sample_days(rng, n_anon, params.acquisition_growth))
    start = first[member] + np.where(
        position > 0, (rng.exponential(10.0, size=len(member)) * DAY).astype(np.int64), 0
    )
    anon_city = draw_cities(rng, n_anon, params.countries)
    plan = SessionPlan(
        person=np.full(len(member), -1, dtype=np.int64),
        visitor=n_customers + n_guests + member,
        start=start,
        depth=_depths(rng, len(member), 0.15, 0.3),
        favourite=np.full(len(member), -1, dtype=np.int64),
        city=anon_city[member],
        signup=np.zeros(len(member), dtype=np.bool_),
    )
    plan = _inside(plan, cal)
    _browse_events(
        rng, _tracked(rng, plan, params.tracking_rate), catalogue, params, out, view_props
    )

    _email_opens(rng, pop, cal, params, created, book.alive, out)
    return out.frame(), n_anon


def _plan(
    rng: np.random.Generator,
    pop: Population,
    params: SimulationParams,
    who: I64,
    start: I64,
    cal: Calendar,
    *,
    signup: bool,
) -> SessionPlan:
    n = len(who)
    depth = (
        np.zeros(n, dtype=np.int64)
        if signup
        else _depths(rng, n, params.cart_abandon_share, params.checkout_abandon_share)
    )
    plan = SessionPlan(
        person=who,
        visitor=who,
        start=start,
        depth=depth,
        favourite=pop.favourite[who],
        city=pop.city[who],
        signup=np.full(n, signup, dtype=np.bool_),
    )
    return _inside(plan, cal)


def _select(plan: SessionPlan, mask: B) -> SessionPlan:
    return SessionPlan(
        person=plan.person[mask],
        visitor=plan.visitor[mask],
        start=plan.start[mask],
        depth=plan.depth[mask],
        favourite=plan.favourite[mask],
        city=plan.city[mask],
        signup=plan.signup[mask],
    )


def _inside(plan: SessionPlan, cal: Calendar) -> SessionPlan:
    """Sessions that start in the period and end (at most 20 minutes later) before its end."""
    return _select(plan, (plan.start >= cal.start_us) & (plan.start < cal.end_us - 20 * MINUTE))


def _tracked(rng: np.random.Generator, plan: SessionPlan, rate: float) -> SessionPlan:
    if rate >= 1.0:
        return plan
    return _select(plan, (rng.random(len(plan.start)) < rate) | plan.signup)
