"""The simulator's generative model: determinism, internal consistency, and true parameters.

The parameter checks compare the simulated data with closed forms of the model it claims
to follow (BG/NBD expected repeat purchases, gamma-gamma mean order value), so a bug in the
generator shows up as a measurable bias rather than as "looks plausible".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import phonenumbers
import polars as pl
import pycountry
import pytest
from scipy.special import hyp2f1

from boomerang.ingest.batch import FRAME_SCHEMAS
from boomerang.ingest.orders_common import attach_digest
from boomerang.simulate import SimulatedStore, SimulationParams, simulate_store
from boomerang.simulate.calendar import Calendar


@pytest.fixture(scope="module")
def sim() -> SimulatedStore:
    return simulate_store(4_000, 365, 21)


@pytest.fixture(scope="module")
def frames(sim: SimulatedStore) -> dict[str, pl.DataFrame]:
    return sim.store_frames()


def test_same_seed_same_frames_other_seed_other_frames(
    frames: dict[str, pl.DataFrame],
) -> None:
    again = simulate_store(4_000, 365, 21).store_frames()
    assert frames.keys() == again.keys()
    for name, frame in frames.items():
        assert frame.equals(again[name]), name
    other = simulate_store(4_000, 365, 22).store_frames()
    assert not frames["orders"].equals(other["orders"])
    assert not frames["events"].equals(other["events"])


def test_frames_have_the_store_schemas(frames: dict[str, pl.DataFrame]) -> None:
    assert set(frames) == set(FRAME_SCHEMAS)
    for name, frame in frames.items():
        assert dict(frame.schema) == FRAME_SCHEMAS[name], name
        assert frame.height > 0, name


def test_counts_follow_the_requested_size_and_rates(sim: SimulatedStore) -> None:
    c = sim.counts()
    p = sim.params
    assert c["customers"] == 4_000
    assert c["buyers"] + c["subscribers"] == 4_000
    assert c["buyers"] / 4_000 == pytest.approx(p.buyer_share, abs=0.03)
    orders = c["orders"]
    assert c["guest_orders"] / orders == pytest.approx(p.guest_order_share, abs=0.01)
    assert c["cancelled_orders"] / orders == pytest.approx(p.cancel_rate, abs=0.01)
    refunds = c["refunded_orders"] + c["partially_refunded_orders"]
    assert refunds / orders == pytest.approx(p.refund_rate, abs=0.015)
    assert all(v > 0 for v in c["events_by_type"].values())
    assert c["email_subscribers_at_end"] > 0 and c["sms_subscribers"] > 0


def test_order_amounts_add_up(frames: dict[str, pl.DataFrame]) -> None:
    orders, lines = frames["orders"], frames["lines"]
    per_order = lines.group_by("order_external_id").agg(
        (pl.col("quantity") * pl.col("unit_price_minor")).sum().alias("gross"),
        pl.col("discount_minor").sum().alias("line_discounts"),
        pl.col("line_no").sort().alias("numbers"),
    )
    joined = orders.join(per_order, left_on="external_id", right_on="order_external_id")
    assert joined.height == orders.height  # every order has lines
    assert (joined["subtotal_minor"] == joined["gross"] - joined["line_discounts"]).all()
    assert (joined["discount_minor"] == joined["line_discounts"]).all()
    total = joined["subtotal_minor"] + joined["shipping_minor"] + joined["tax_minor"]
    assert (joined["total_minor"] == total).all()
    assert (joined["refunded_minor"] <= joined["total_minor"]).all()
    assert (joined["refunded_minor"] >= 0).all()
    numbered = joined["numbers"].to_list()
    assert all(n == list(range(1, len(n) + 1)) for n in numbered)
    status = joined["status"]
    assert set(status.unique()) <= {
        "paid",
        "partially_refunded",
        "refunded",
        "cancelled",
        "pending",
    }
    assert ((status == "cancelled") == joined["cancelled_at"].is_not_null()).all()
    refunded = joined.filter(pl.col("status") == "refunded")
    assert (refunded["refunded_minor"] == refunded["total_minor"]).all()
    assert (joined.filter(pl.col("status") == "paid")["refunded_minor"] == 0).all()


def test_times_lie_in_the_period_in_whole_seconds(
    sim: SimulatedStore, frames: dict[str, pl.DataFrame]
) -> None:
    cal = sim.calendar
    for name, column in (("orders", "placed_at"), ("events", "occurred_at")):
        values = frames[name][column]
        assert values.min() >= cal.start_us, name  # type: ignore[operator]
        assert values.max() < cal.end_us, name  # type: ignore[operator]
        assert (values % 1_000_000 == 0).all(), name


def test_names_and_numbers_follow_time(frames: dict[str, pl.DataFrame]) -> None:
    orders = frames["orders"].with_columns(
        pl.col("external_id").str.strip_prefix("#").cast(pl.Int64).alias("n")
    )
    ordered = orders.sort("n")
    assert ordered["n"].to_list() == list(range(1001, 1001 + orders.height))
    assert ordered["placed_at"].is_sorted()


def test_customers_are_valid_and_created_at_their_first_order(
    frames: dict[str, pl.DataFrame],
) -> None:
    customers = frames["customers"]
    assert customers["external_id"].n_unique() == customers.height
    assert (customers["external_id"] == customers["email"]).all()
    assert (customers["email"] == customers["email"].str.to_lowercase()).all()
    phones = customers["phone"].drop_nulls().to_list()
    assert phones and all(phonenumbers.is_valid_number(phonenumbers.parse(p)) for p in phones)
    countries = set(customers["country"].drop_nulls().to_list())
    assert countries and all(pycountry.countries.get(alpha_2=c) for c in countries)
    first = frames["orders"].group_by("customer_key").agg(pl.col("placed_at").min().alias("first"))
    joined = customers.join(first, left_on="external_id", right_on="customer_key")
    assert (joined["created_at"] == joined["first"]).all()
    guests = frames["orders"].filter(pl.col("customer_key").is_null())
    assert guests.height > 0 and guests["email"].is_null().all()


def test_consents_match_opt_ins(sim: SimulatedStore, frames: dict[str, pl.DataFrame]) -> None:
    consents = frames["consents"]
    pop = sim.population
    granted = consents.filter((pl.col("channel") == "email") & (pl.col("status") == "granted"))
    assert granted.height == int(pop.email_opt_in.sum())
    sms = consents.filter(pl.col("channel") == "sms")
    assert sms.height == int(pop.sms_opt_in.sum())
    phones = frames["customers"].filter(pl.col("phone").is_not_null())["external_id"]
    assert sms["customer_key"].is_in(phones.implode()).all()
    buyers = pop.segment != 2
    share = pop.email_opt_in[buyers].mean()
    assert share == pytest.approx(sim.params.email_opt_in, abs=0.03)


def test_consumables_carry_their_lifespan(frames: dict[str, pl.DataFrame]) -> None:
    products = frames["products"]
    consumable = products.filter(pl.col("lifespan_days").is_not_null())
    assert consumable.height > 0
    assert set(consumable["category"].unique()) == {"Coffee", "Tea", "Skincare", "Supplements"}


def test_digests_are_the_importers(frames: dict[str, pl.DataFrame]) -> None:
    orders = frames["orders"].head(300)
    lines = frames["lines"].filter(
        pl.col("order_external_id").is_in(orders["external_id"].implode())
    )
    expected = attach_digest(orders.drop("lines_digest"), lines)
    assert expected.sort("external_id")["lines_digest"].equals(
        orders.sort("external_id")["lines_digest"]
    )


def test_every_online_order_has_a_purchase_funnel(
    sim: SimulatedStore, frames: dict[str, pl.DataFrame]
) -> None:
    events = frames["events"]
    placed = events.filter(pl.col("type") == "order_placed").with_columns(
        pl.col("properties").str.json_path_match("$.order").alias("order")
    )
    online = frames["orders"].filter(pl.col("channel") == "online")
    assert set(placed["order"].to_list()) == set(online["external_id"].to_list())
    check = placed.join(
        online.select("external_id", "placed_at"), left_on="order", right_on="external_id"
    )
    assert (check["occurred_at"] == check["placed_at"]).all()
    # Within a visitor's purchase session: visit, views, add to cart, checkout, then the order.
    funnel = events.filter(pl.col("anonymous_id") == placed["anonymous_id"][0]).sort(
        "occurred_at", "dedupe_key"
    )
    kinds = funnel.filter(
        pl.col("occurred_at").is_between(
            placed["occurred_at"][0] - 30 * 60 * 1_000_000, placed["occurred_at"][0]
        )
    )["type"].to_list()
    assert kinds[0] == "visit" and kinds[-1] == "order_placed"
    assert kinds.index("added_to_cart") < kinds.index("checkout_started")


def test_bgnbd_repeat_purchases_match_the_closed_form() -> None:
    """Mean repeat purchases of shoppers = E[X(T)] of BG/NBD (Fader, Hardie & Lee 2005, eq. 7)."""
    sim = simulate_store(20_000, 730, 11)
    p = sim.params
    truth = sim.truth_customers().filter(pl.col("segment") == "shopper")
    t = truth["demand_weeks_observed"].to_numpy()
    repeats = truth["orders"].to_numpy() - 1
    expected = (
        (p.a + p.b - 1)
        / (p.a - 1)
        * (
            1
            - (p.alpha / (p.alpha + t)) ** p.r * hyp2f1(p.r, p.b, p.a + p.b - 1, t / (p.alpha + t))
        )
    )
    assert repeats.mean() == pytest.approx(expected.mean(), rel=0.05)
    assert truth["lambda_per_week"].mean() == pytest.approx(p.r / p.alpha, rel=0.05)
    shopper_orders = sim.book.orders.filter(pl.col("kind") == 0)
    mean_value = shopper_orders["gross_minor"].mean() / 100  # type: ignore[operator]
    assert mean_value == pytest.approx(p.p * p.gamma / (p.q - 1), rel=0.05)


def test_purchase_rate_without_dropout_is_r_over_alpha() -> None:
    """With dropout switched off, each shopper's repeat rate estimates λ, so the mean is r/α."""
    params = dataclasses.replace(SimulationParams(), a=1e-3, b=1e6)
    sim = simulate_store(20_000, 365, 5, params)
    truth = sim.truth_customers().filter(
        (pl.col("segment") == "shopper") & (pl.col("demand_weeks_observed") > 4)
    )
    assert truth["alive_at_end"].all()
    rate = (truth["orders"] - 1) / truth["demand_weeks_observed"]
    print(f"mean repeat rate {rate.mean():.5f} per week, r/alpha {params.r / params.alpha:.5f}")
    assert rate.mean() == pytest.approx(params.r / params.alpha, rel=0.06)


def test_holiday_season_sells_more_than_summer() -> None:
    cal = Calendar.build(365, SimulationParams(end_date="2026-01-01"))
    month = np.array(
        [(np.datetime64(cal.start.isoformat()) + np.timedelta64(i, "D")).astype(object).month
         for i in range(365)]
    )  # fmt: skip
    assert cal.multiplier[month == 12].mean() > 1.3 * cal.multiplier[month == 7].mean()
    assert cal.multiplier.mean() == pytest.approx(1.0, abs=0.02)


def test_replenishers_reorder_near_the_lifespan(sim: SimulatedStore) -> None:
    orders = sim.book.orders.filter(pl.col("kind") == 1).sort("owner", "placed_at")
    gaps = orders.with_columns(
        ((pl.col("placed_at").diff().over("owner")) / 86_400e6).alias("gap_days")
    ).drop_nulls("gap_days")
    staple = sim.catalogue.lifespan[sim.population.staple[gaps["owner"].to_numpy()]]
    ratio = gaps["gap_days"].to_numpy() / staple
    # quantity 1 (most orders) or 2: the gap is about one or two lifespans
    assert np.median(ratio) == pytest.approx(1.0, abs=0.1)
