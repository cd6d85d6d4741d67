"""The true parameters of a simulated store, with the defaults `boomerang simulate` uses.

Why one frozen dataclass: every number that shapes the data lives here, is written to
truth.json unchanged, and can be overridden for a test or a benchmark with
`dataclasses.replace`. docs/simulator.md explains each one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Shares of customers by country (ISO 3166 alpha-2); cities per country are in geo.py.
DEFAULT_COUNTRIES: dict[str, float] = {
    "US": 0.58,
    "CA": 0.10,
    "GB": 0.12,
    "DE": 0.07,
    "FR": 0.06,
    "AU": 0.07,
}

# Demand multiplier per calendar month (January first), before normalisation.
DEFAULT_MONTH_FACTORS: tuple[float, ...] = (
    0.85,
    0.90,
    0.95,
    0.95,
    1.00,
    0.95,
    0.90,
    0.95,
    1.00,
    1.05,
    1.35,
    1.50,
)

# Demand multiplier per weekday (Monday first), before normalisation.
DEFAULT_WEEKDAY_FACTORS: tuple[float, ...] = (1.08, 1.02, 1.00, 0.98, 0.94, 0.92, 1.06)

# Share of a local day's activity in each hour (0h..23h), before normalisation.
DEFAULT_HOUR_WEIGHTS: tuple[float, ...] = (
    0.6,
    0.35,
    0.2,
    0.15,
    0.15,
    0.25,
    0.6,
    1.2,
    1.8,
    2.2,
    2.5,
    2.7,
    3.0,
    2.8,
    2.5,
    2.4,
    2.4,
    2.6,
    3.0,
    3.6,
    4.0,
    3.8,
    2.8,
    1.5,
)


@dataclass(frozen=True)
class SimulationParams:
    """Every knob of the generative model; the values are the defaults of `boomerang simulate`."""

    # Period: the history ends (exclusive, UTC midnight) on this fixed date so a seed always
    # gives the same data, whatever day it is run.
    end_date: str = "2026-11-01"
    currency: str = "USD"

    # Population. `customers` = buyers + newsletter subscribers who never buy.
    buyer_share: float = 0.72
    replenisher_share: float = 0.15  # of buyers: reorder one consumable at its lifespan
    acquisition_growth: float = 0.6  # new-customer arrivals grow by this factor per year

    # BG/NBD for shoppers (time unit: weeks). λ ~ Gamma(r, rate α), p ~ Beta(a, b).
    r: float = 0.55
    alpha: float = 9.0
    a: float = 0.85
    b: float = 3.2

    # Gamma-gamma for shoppers' order values (money unit: currency major units, e.g. dollars):
    # ν ~ Gamma(q, rate γ) per customer; each order's merchandise value ~ Gamma(p, rate ν).
    p: float = 6.0
    q: float = 4.0
    gamma: float = 45.0

    # Replenishers: next order after lifespan × quantity × LogNormal(0, sigma) days.
    replenish_sigma: float = 0.15
    replenish_double_qty: float = 0.15  # share of replenishment orders with quantity 2
    replenish_extra_line: float = 0.25  # share with one more (non-staple) product

    # Catalogue and baskets.
    products: int = 240
    extra_lines_mean: float = 0.7  # lines per shopper order = 1 + Poisson(this), capped
    max_lines: int = 8
    favourite_category_share: float = 0.6  # lines from the customer's favourite category

    # Orders that are not a customer's: guest checkouts without an email.
    guest_order_share: float = 0.05
    guest_pos_share: float = 0.4  # of guest orders: in-store (POS, channel offline)
    customer_pos_share: float = 0.03  # of customers' orders: in-store

    # Financial outcomes.
    refund_rate: float = 0.04
    partial_refund_share: float = 0.5  # of refunds
    cancel_rate: float = 0.02
    pending_days: float = 2.0  # orders this recent may still be pending payment
    pending_share: float = 0.3  # ... with this probability

    # Discounts, shipping, tax.
    welcome_code_share: float = 0.25  # of first orders: WELCOME10 (10 % off)
    holiday_code_share: float = 0.30  # of orders from Black Friday to Dec 20: HOLIDAY20 (20 %)
    free_shipping_over: float = 75.0
    shipping_domestic: float = 6.95
    shipping_international: float = 14.95
    shipping_express: float = 19.95
    express_share: float = 0.1

    # Contact data and consent.
    email_opt_in: float = 0.60  # of buyers (subscribers always opt in)
    sms_opt_in: float = 0.20  # of buyers; all of them have a phone
    phone_share: float = 0.55  # of buyers with a phone number
    unsubscribe_rate: float = 0.08  # of email opt-ins who withdraw before the end
    account_share: float = 0.45  # of buyers with a registered account
    birthday_share: float = 0.30
    mixed_case_email_share: float = 0.05  # emails typed with capitals in the Shopify files

    # Sessions and events.
    tracking_rate: float = 1.0  # share of sessions the site's tracker records
    extra_views_mean: float = 1.2  # views besides the bought products in a purchase session
    abandoned_sessions_per_order: float = 0.8
    cart_abandon_share: float = 0.35  # of abandoned sessions: something was added to the cart
    checkout_abandon_share: float = 0.4  # of cart abandonments: checkout was started
    trailing_sessions_mean: float = 0.5  # visits after a buyer's last order
    subscriber_sessions_mean: float = 1.0  # visits of a subscriber after signing up
    anonymous_visitors_per_customer: float = 0.6  # visitors who never buy nor sign up
    newsletter_every_days: int = 7
    open_rate_active: float = 0.22  # buyers still alive at the end
    open_rate_lapsed: float = 0.06  # buyers who dropped out
    open_rate_subscriber: float = 0.12

    countries: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_COUNTRIES))
    month_factors: tuple[float, ...] = DEFAULT_MONTH_FACTORS
    weekday_factors: tuple[float, ...] = DEFAULT_WEEKDAY_FACTORS
    black_friday_factor: float = 2.2  # Black Friday to Cyber Monday, on top of November
    late_december_factor: float = 0.7  # Dec 21-31, after the last shipping day
    hour_weights: tuple[float, ...] = DEFAULT_HOUR_WEIGHTS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def benchmark_params() -> SimulationParams:
    """About 10 orders and 20 events per customer over 730 days: the 1M/10M/20M benchmark.

    Loyal, frequent buyers (mean λ 0.32/week, mean dropout 0.04) and a tracker that records
    a fifth of the sessions keep the events near two per order.
    """
    return replace(
        SimulationParams(),
        buyer_share=0.9,
        r=3.2,
        alpha=10.0,
        a=0.6,
        b=14.0,
        tracking_rate=0.2,
        abandoned_sessions_per_order=0.5,
        anonymous_visitors_per_customer=0.3,
        open_rate_active=0.02,
        open_rate_lapsed=0.01,
        open_rate_subscriber=0.02,
    )
