"""The loyalty program simulator (`boomerang loyalty simulate`) on stores computed by hand.

The tiny store below is replayed with PROGRAM at a redemption rate of 50% on SQLite and
PostgreSQL; every figure is worked out in the comments. Times are UTC, money in cents,
1 point per dollar of items after discounts; lots expire 90 days after they are earned;
Gold (400 points earned, lifetime) multiplies order points by 1.5 and gives 30 entry
points (a lot expiring 90 days later, like any other). Rewards: vip-gift (150 points, Gold only,
once per customer, no money value) and ten-off (200 points for $4 off), so one point costs
the store 400 / 200 = 2 cents.

A: A1 Jan 10 10:00 $150 -> account 20 + 150 + first-order 50 = 220 (lots expire Apr 10).
   Redeem? ten-off needs (0 + 200) <= 50% x 220: no.
   A2 Mar 3 12:00, $120 items - $20 discount + $10 shipping, double-points week:
   100 x 2 = 200 (expires Jun 1). 420 >= 400: Gold, +30 entry (expires Jun 1). Earned 450.
   vip-gift: 150 <= 225: redeem, from the Apr 10 lots (account 20, then 130 of A1's 200:
   70 left). Next, ten-off: 150 + 200 > 225: stop.
   A3 May 20 09:00 $80: A1's 70 expired Apr 10 (April). Gold: 80 x 1.5 = 120 (expires
   Aug 18). Earned 570; ten-off: 350 > 285: stop.
   End (Jul 21): A2's 200 and the entry 30 expired Jun 1 (June). Balance 120. Expired 300.
B: B1 Jan 20 09:00 $400, $100 refunded: account 20 + 400 x 0.75 + 50 = 370 (Apr 20).
   B2 Feb 10 cancelled: nothing. B3 Feb 15 10:00 $50: not a first order (B1 was), 50
   (May 16); 420: Gold, +30 (May 16); earned 450. vip-gift: 20 (account) + 130 of B1's
   350. End: B1's 220 left expired Apr 20, B3's 50 and the entry 30 May 16; balance 0.
   Expired 300.
C: C1 Mar 5 08:00 $300 in the double-points week: account 20 + 600 + 50 = 670 (Jun 3);
   Gold, +30 (Jun 3); earned 700. vip-gift (150 <= 350), then ten-off (350 <= 350): 350
   redeemed from the Jun 3 lots, oldest first (account 20, then C1's); C1's 320 left and
   the entry 30 expire Jun 3. Balance 0. Expired 350.
D: D1 Apr 1 10:00 $100 fully refunded: account 20, the order earns 0 and no first-order
   bonus (nothing kept), and D2 is not a first order. D2 Apr 15 10:00 $90: 90 (Jul 14).
   D3 Jul 20 14:00 $10: the account's 20 expired Jun 30, D2's 90 Jul 14; +10. Bronze
   (120 earned). Balance 10. Expired 110.
G: G1 Feb 1 12:00, a $10 guest order: revenue, no points.

Issued 570 + 450 + 700 + 120 = 1,840: orders 470 + 350 + 600 + 100 = 1,520, first-order
bonus 150, account 80, tier entry 90. Redeemed 150 + 150 + 350 = 650 (vip-gift 3, ten-off
1; 3 redeemers). Expired 300 + 300 + 350 + 110 = 1,060. Outstanding 120 + 0 + 0 + 10 = 130
= 1,840 - 650 - 1,060. Revenue (total - refunded, not cancelled) 150 + 110 + 80 + 300 + 50
+ 300 + 0 + 90 + 10 + 10 = $1,100. Cost (650 + 130) x 2 = 1,560 cents = 1.4181...% of
revenue. Still to be redeemed at 50%: A min(120, 285 - 150) = 120, B 0, C 0, D min(10,
60) = 10: 130; expected cost (650 + 130) x 2 = 1,560, the same (all that is left is
within the rate).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from boomerang.cli.app import app
from boomerang.errors import InputError
from boomerang.ingest.batch import conform
from boomerang.loyalty.program import parse_program
from boomerang.loyalty.simulator import Assumptions, MonthFigures, point_value, simulate
from boomerang.services.imports import apply_frames
from boomerang.services.loyalty_simulator import simulate_program
from boomerang.simulate import simulate_store

EXAMPLE = Path(__file__).parents[2] / "examples" / "loyalty-program.yaml"

PROGRAM: dict[str, Any] = {
    "earn": {"points_per_unit": 1, "spend_basis": "net", "first_order_bonus": 50,
             "account_created": 20},
    "bonuses": [{"name": "double week", "multiplier": 2, "starts": "2025-03-01",
                 "ends": "2025-03-08"}],
    "rewards": [
        {"id": "vip-gift", "name": "VIP gift", "kind": "free_product", "cost": 150,
         "tiers": ["Gold"], "per_customer_limit": 1},
        {"id": "ten-off", "name": "$4 off", "kind": "amount_off", "cost": 200, "value": 400},
    ],
    "tiers": {"basis": "points", "period": "lifetime", "levels": [
        {"name": "Bronze", "threshold": 0},
        {"name": "Gold", "threshold": 400, "multiplier": 1.5, "entry_points": 30},
    ]},
    "expiry": {"mode": "lot", "days": 90},
}  # fmt: skip

CUSTOMERS = {"A": "a@example.com", "B": "b@example.com", "C": "c@example.com",
             "D": "d@example.com"}  # fmt: skip

# name, customer, placed (UTC), subtotal, discount, shipping, refunded, status (cents)
ORDERS = [
    ("A1", "A", "2025-01-10 10:00", 15_000, 0, 0, 0, "paid"),
    ("A2", "A", "2025-03-03 12:00", 12_000, 2_000, 1_000, 0, "paid"),
    ("A3", "A", "2025-05-20 09:00", 8_000, 0, 0, 0, "paid"),
    ("B1", "B", "2025-01-20 09:00", 40_000, 0, 0, 10_000, "partially_refunded"),
    ("B2", "B", "2025-02-10 15:00", 6_000, 0, 0, 0, "cancelled"),
    ("B3", "B", "2025-02-15 10:00", 5_000, 0, 0, 0, "paid"),
    ("C1", "C", "2025-03-05 08:00", 30_000, 0, 0, 0, "paid"),
    ("D1", "D", "2025-04-01 10:00", 10_000, 0, 0, 10_000, "refunded"),
    ("D2", "D", "2025-04-15 10:00", 9_000, 0, 0, 0, "paid"),
    ("D3", "D", "2025-07-20 14:00", 1_000, 0, 0, 0, "paid"),
    ("G1", None, "2025-02-01 12:00", 1_000, 0, 0, 0, "paid"),
]

MONTHLY = [  # issued, redeemed, expired
    (date(2025, 1, 1), 590, 0, 0),  # A 220, B 370
    (date(2025, 2, 1), 80, 150, 0),  # B3 50 + entry 30; B's vip-gift
    (date(2025, 3, 1), 930, 500, 0),  # A 200 + 30, C 700; A 150, C 350
    (date(2025, 4, 1), 110, 0, 290),  # D 20 + 90; A1's 70, B1's 220
    (date(2025, 5, 1), 120, 0, 80),  # A3; B3's 50, B's entry 30
    (date(2025, 6, 1), 0, 0, 600),  # A2's 200 + entry 30, C1's 320 + entry 30, D's account 20
    (date(2025, 7, 1), 10, 0, 90),  # D3; D2's 90
]


def us(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000


def frames(orders: list[tuple[Any, ...]]) -> dict[str, pl.DataFrame]:
    customers = pl.DataFrame(
        {
            "external_id": list(CUSTOMERS.values()),
            "email": list(CUSTOMERS.values()),
            "account_status": ["registered"] * len(CUSTOMERS),
        }
    )
    total = [o[3] - o[4] + o[5] for o in orders]
    frame = pl.DataFrame(
        {
            "external_id": [o[0] for o in orders],
            "customer_key": [CUSTOMERS[o[1]] if o[1] else None for o in orders],
            "email": [CUSTOMERS[o[1]] if o[1] else None for o in orders],
            "placed_at": [us(o[2]) for o in orders],
            "currency": ["USD"] * len(orders),
            "subtotal_minor": [o[3] for o in orders],
            "discount_minor": [o[4] for o in orders],
            "shipping_minor": [o[5] for o in orders],
            "tax_minor": [0] * len(orders),
            "total_minor": total,
            "refunded_minor": [o[6] for o in orders],
            "status": [o[7] for o in orders],
            "channel": ["online"] * len(orders),
            "source": ["test"] * len(orders),
            "lines_digest": [f"d-{o[0]}" for o in orders],
        }
    )
    return {"customers": conform("customers", customers), "orders": conform("orders", frame)}


@pytest.fixture
def tiny(db: str, tmp_path: Path) -> tuple[str, Path]:
    apply_frames(db, "tiny", frames(ORDERS))
    path = tmp_path / "program.yaml"
    path.write_text(yaml.safe_dump(PROGRAM), encoding="utf-8")
    return db, path


def test_tiny_store_by_hand(tiny: tuple[str, Path]) -> None:
    db, path = tiny
    r = simulate_program(db, "tiny", path, redemption_rate=0.5)
    assert r.start == us("2025-01-10 10:00") and r.end == us("2025-07-21 00:00")
    assert (r.members, r.orders, r.revenue_minor) == (4, 11, 110_000)
    assert r.points_issued == 1_840
    assert r.issued_by_source == {
        "orders": 1_520, "first_order_bonus": 150, "account_created": 80, "tier_entry": 90,
    }  # fmt: skip
    assert (r.points_redeemed, r.points_expired, r.points_outstanding) == (650, 1_060, 130)
    assert (r.redemptions, r.redeemers) == (4, 3)
    assert r.redemptions_by_reward == {"ten-off": 1, "vip-gift": 3}
    assert r.point_value_minor == Decimal(2) and r.point_value_source == "reward ten-off"
    assert (r.redemption_cost_minor, r.liability_minor, r.cost_minor) == (1_300, 260, 1_560)
    assert r.cost_pct_of_revenue == 156_000 / 110_000
    assert r.expected_outstanding_redeemed == 130
    assert (r.expected_cost_minor, r.expected_cost_pct_of_revenue) == (1_560, 156_000 / 110_000)
    assert r.tier_mix == {"Bronze": 1, "Gold": 3}
    assert r.monthly == [MonthFigures(*m) for m in MONTHLY]
    assert any("1 guest orders" in n for n in r.notes)
    records = r.records()
    assert records["monthly"][0] == {"month": "2025-01", "issued": 590, "redeemed": 0, "expired": 0}
    json.dumps(records)  # JSON-ready


def test_tiny_store_window(tiny: tuple[str, Path]) -> None:
    """Launched Feb 1, looked at on Mar 31: A1 and B1 came before the launch, so A and B
    get no first-order bonus; B's account points come with the cancelled B2 (20, Bronze),
    B3 earns 50; A: 20 + 200 (Bronze, 220); C as above (700, 350 redeemed). Nothing has
    expired by Apr 1. Revenue G1 10 + B3 50 + A2 110 + C1 300 = $470."""
    db, path = tiny
    r = simulate_program(
        db, "tiny", path, redemption_rate=0.5, start=date(2025, 2, 1), end=date(2025, 3, 31)
    )
    assert (r.members, r.orders, r.revenue_minor) == (3, 5, 47_000)
    assert (r.points_issued, r.points_redeemed, r.points_expired) == (990, 350, 0)
    assert r.points_outstanding == 640
    assert r.issued_by_source["first_order_bonus"] == 50
    assert r.tier_mix == {"Bronze": 2, "Gold": 1}
    assert [m.month for m in r.monthly] == [date(2025, 2, 1), date(2025, 3, 1)]


def test_empty_store_is_a_clear_error(db: str) -> None:
    apply_frames(db, "empty", {})
    with pytest.raises(InputError, match="no orders"):
        simulate_program(db, "empty", parse_program(PROGRAM))


# -- the pure core ----------------------------------------------------------------------------


def orders_frame(rows: list[tuple[int, str, int, str]]) -> pl.DataFrame:
    """(customer, placed 'YYYY-MM-DD HH:MM', amount in cents, status), no discounts."""
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "placed_at": [us(r[1]) for r in rows],
            "currency": ["USD"] * len(rows),
            "subtotal_minor": [r[2] for r in rows],
            "discount_minor": [0] * len(rows),
            "total_minor": [r[2] for r in rows],
            "refunded_minor": [0] * len(rows),
            "status": [r[3] for r in rows],
        }
    )


SIMPLE = parse_program(
    {
        "rewards": [{"id": "five-off", "name": "$5", "kind": "amount_off", "cost": 100,
                     "value": 500}],
        "expiry": {"mode": "lot", "days": 30},
    }
)  # fmt: skip
SIMPLE_ORDERS = orders_frame(
    [
        (1, "2025-01-01 10:00", 25_000, "paid"),  # 250 points
        (1, "2025-01-15 10:00", 8_000, "paid"),  # 80
        (2, "2025-01-02 10:00", 9_000, "paid"),  # 90: never reaches 100
        (2, "2025-03-01 10:00", 5_000, "paid"),  # 50, after the 90 expired on Feb 1
    ]
)


def test_rate_one_redeems_whenever_the_balance_allows() -> None:
    """1: 250 -> two rewards (200), 50 left (expires Jan 31); 80 -> 130: one more, taking
    the Jan 1 lot's 50 first, then 50 of the Jan 15 lot; 30 left expires Feb 14.
    2: 90 expires Feb 1; 50 held at the end (Mar 2). Point = 5 cents."""
    r = simulate(SIMPLE, SIMPLE_ORDERS, currency="USD", assumptions=Assumptions(redemption_rate=Decimal(1)))  # fmt: skip
    assert (r.points_issued, r.points_redeemed, r.points_expired, r.points_outstanding) == (
        470, 300, 120, 50,
    )  # fmt: skip
    assert r.redemptions == 3 and r.point_value_minor == 5
    assert (r.redemption_cost_minor, r.liability_minor) == (1_500, 250)
    assert r.revenue_minor == 47_000 and r.cost_pct_of_revenue == 1_750 * 100 / 47_000
    assert r.tier_mix == {}  # a program without tiers
    assert [(m.redeemed, m.expired) for m in r.monthly] == [(300, 0), (0, 120), (0, 0)]


def test_rate_zero_never_redeems() -> None:
    r = simulate(SIMPLE, SIMPLE_ORDERS, currency="USD", assumptions=Assumptions(redemption_rate=Decimal(0)))  # fmt: skip
    # 1: 250 expires Jan 31, 80 Feb 14; 2: 90 Feb 1; 50 held.
    assert (r.points_redeemed, r.points_expired, r.points_outstanding, r.redemptions) == (
        0, 420, 50, 0,
    )  # fmt: skip
    assert r.expected_outstanding_redeemed == 0 and r.expected_cost_minor == 0
    assert r.cost_minor == 250


def test_inactivity_expiry_takes_the_whole_idle_balance() -> None:
    """30 days without earning or redeeming: the whole balance goes. An order exactly 30
    days after the last activity still finds it (the job takes balances idle for longer)."""
    program = parse_program(
        {"expiry": {"mode": "inactivity", "days": 30}, "rewards": SIMPLE.model_dump()["rewards"]}
    )
    orders = orders_frame(
        [
            (1, "2025-01-01 00:00", 10_000, "paid"),  # 100
            (1, "2025-01-31 00:00", 2_000, "paid"),  # exactly 30 days: kept, 120
            (1, "2025-03-15 00:00", 4_000, "paid"),  # idle since Jan 31: 120 expired Mar 2
            (2, "2025-01-05 00:00", 5_000, "paid"),  # 50, expires Feb 4
        ]
    )
    r = simulate(program, orders, currency="USD", assumptions=Assumptions(redemption_rate=Decimal(0)))  # fmt: skip
    assert (r.points_issued, r.points_expired, r.points_outstanding) == (210, 170, 40)
    assert [(m.month.month, m.expired) for m in r.monthly] == [(1, 0), (2, 50), (3, 120)]


def test_downgrade_waits_for_the_review_date() -> None:
    """Spend basis, calendar year: $600 in June 2024 makes Gold (review June 2025). In
    February 2025 the year's spend is $10 but Gold holds (x1.5: 15 points); in July 2025
    the review is due: back to Silver before the order's points (10)."""
    program = parse_program(
        {
            "tiers": {"basis": "spend", "period": "calendar_year", "levels": [
                {"name": "Silver", "threshold": 0},
                {"name": "Gold", "threshold": 50_000, "multiplier": 1.5},
            ]},
            "rewards": SIMPLE.model_dump()["rewards"],
        }
    )  # fmt: skip
    orders = orders_frame(
        [
            (1, "2024-06-01 10:00", 60_000, "paid"),  # Silver before, 600; then Gold
            (1, "2025-02-01 10:00", 1_000, "paid"),  # Gold still: 15
        ]
    )
    zero = Assumptions(redemption_rate=Decimal(0))
    gold = simulate(program, orders, currency="USD", assumptions=zero)
    assert gold.points_issued == 615 and gold.tier_mix == {"Silver": 0, "Gold": 1}
    later = pl.concat([orders, orders_frame([(1, "2025-07-01 10:00", 1_000, "paid")])])
    r = simulate(program, later, currency="USD", assumptions=zero)
    assert r.points_issued == 625 and r.tier_mix == {"Silver": 1, "Gold": 0}


def test_point_value_and_its_absence() -> None:
    """The best value per point among amount_off/store_credit rewards; none: say so."""
    program = parse_program(
        {
            "rewards": [
                {"id": "a", "name": "a", "kind": "amount_off", "cost": 500, "value": 500},
                {"id": "b", "name": "b", "kind": "store_credit", "cost": 400, "value": 600},
                {"id": "c", "name": "c", "kind": "percent_off", "cost": 100, "value": 5000},
            ]
        }
    )
    found = point_value(program)
    assert found is not None and found[0] == Fraction(3, 2) and found[1].id == "b"
    bare = parse_program({})
    with pytest.raises(InputError, match="price a point"):
        simulate(bare, SIMPLE_ORDERS, currency="USD")
    r = simulate(
        bare, SIMPLE_ORDERS, currency="USD",
        assumptions=Assumptions(point_value_minor=Decimal("0.5")),
    )  # fmt: skip
    assert r.points_issued == 470 and r.liability_minor == 235  # nothing expires
    assert any("no rewards" in n for n in r.notes)


# -- the command --------------------------------------------------------------------------------


def test_cli_prints_liability_and_cost_share(sqlite_db: str) -> None:
    """On SQLite only: the engines are compared on the tiny store above."""
    db = sqlite_db
    apply_frames(db, "sim", simulate_store(300, 365, seed=11).store_frames())
    runner = CliRunner()
    args = ["loyalty", "simulate", str(EXAMPLE), "--db", db, "--store", "sim"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "outstanding liability" in result.output
    assert "% of revenue" in result.output and "cost (redeemed + liability)" in result.output
    assert "tier mix" in result.output
    out = runner.invoke(app, [*args, "--json", "--redemption-rate", "1"])
    assert out.exit_code == 0, out.output
    figures = json.loads(out.output)
    assert figures["redemption_rate"] == 1.0 and figures["point_value_minor"] == 1.0
    assert figures["points_issued"] == (
        figures["points_redeemed"] + figures["points_expired"] + figures["points_outstanding"]
    )
    assert figures["cost_pct_of_revenue"] > 0
    bad = runner.invoke(app, [*args, "--from", "2030-01-01"])
    assert bad.exit_code != 0 and isinstance(bad.exception, InputError)


def test_program_file_simulation_section(tmp_path: Path) -> None:
    """Assumptions may ride in the file (`simulation:`); a bad one names the field."""
    from boomerang.services.loyalty_simulator import read_program_file

    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump({**PROGRAM, "simulation": {"redemption_rate": 0.25, "point_value_minor": 3}})
    )
    program, assumptions = read_program_file(path)
    assert program.tiers.levels[1].name == "Gold"
    assert assumptions == Assumptions(redemption_rate=Decimal("0.25"), point_value_minor=Decimal(3))
    path.write_text(yaml.safe_dump({**PROGRAM, "simulation": {"redemption_rate": 2}}))
    with pytest.raises(InputError, match=r"simulation\.redemption_rate"):
        read_program_file(path)
