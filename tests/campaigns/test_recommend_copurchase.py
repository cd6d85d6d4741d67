"""The co-purchase recommender against hand-computed baskets (no database).

Purchases (customer: products; units in brackets when not 1; days before NOW):

    c1: A, B                 (10 days ago)
    c2: A, C                 (5)
    c3: A [2], B, D          (3)
    c4: B, C [3]             (2)
    c5: E [9]                (200: outside the 90-day popularity window)

Co-purchase counts C[x, y] = customers who bought both:
    A-B 2 (c1, c3), A-C 1 (c2), A-D 1 (c3), B-C 1 (c4), B-D 1 (c3); E with nothing.

Popularity (units in the last 90 days, then units ever, then SKU): A 4, C 4 (tie on both:
A before C by SKU), B 3, D 1, E 0 (9 ever) -> A > C > B > D > E.

Scores (Σ over the customer's products; bought products excluded):
    c1 {A, B}: C = 1 + 1 = 2, D = 1 + 1 = 2 (tie: C more popular), E = 0 -> C, D, E
    c2 {A, C}: B = 2 + 1 = 3, D = 1 + 0 = 1, E = 0                        -> B, D, E
    c3 {A, B, D}: C = 1 + 1 + 0 = 2, E = 0                                -> C, E
    c4 {B, C}: A = 2 + 1 = 3, D = 1 + 0 = 1, E = 0                        -> A, D, E
    c5 {E}: nothing co-purchased -> popularity: A, C, B (k = 3)
    a customer with no purchases -> A, C, B
"""

from __future__ import annotations

import polars as pl
import pytest

from boomerang.domain.clock import MICROS_PER_DAY
from boomerang.recommend import copurchase
from boomerang.recommend.base import ProductRef, Recommender
from boomerang.recommend.copurchase import CoPurchaseRecommender

DAY = MICROS_PER_DAY
NOW = 20_000 * DAY

BASKETS = [
    (1, "A", 1, 10), (1, "B", 1, 10),
    (2, "A", 1, 5), (2, "C", 1, 5),
    (3, "A", 2, 3), (3, "B", 1, 3), (3, "D", 1, 3),
    (4, "B", 1, 2), (4, "C", 3, 2),
    (5, "E", 9, 200),
]  # fmt: skip


def purchases(rows: list[tuple[int, str, int, int]] = BASKETS) -> pl.DataFrame:
    return pl.DataFrame(
        [(c, s, q, NOW - d * DAY) for c, s, q, d in rows],
        schema={
            "customer_id": pl.Int64,
            "sku": pl.String,
            "quantity": pl.Int64,
            "placed_at": pl.Int64,
        },
        orient="row",
    )


def catalogue(skus: str = "ABCDE", attributes: dict[str, str] | None = None) -> pl.DataFrame:
    attributes = attributes or {}
    return pl.DataFrame(
        {
            "sku": list(skus),
            "name": [f"Product {s}" for s in skus],
            "category": ["Tea"] * len(skus),
            "price_minor": [100 * (i + 1) for i in range(len(skus))],
            "currency": ["USD"] * len(skus),
            "attributes": [attributes.get(s) for s in skus],
        },
        schema_overrides={"attributes": pl.String},
    )


def skus(found: dict[int, list[ProductRef]]) -> dict[int, list[str]]:
    return {c: [p.sku for p in products] for c, products in found.items()}


@pytest.fixture
def fitted() -> CoPurchaseRecommender:
    return CoPurchaseRecommender.fit(purchases(), catalogue(), now=NOW)


def test_counts_and_popularity(fitted: CoPurchaseRecommender) -> None:
    order = [p.sku for p in fitted.products]
    assert order == ["A", "B", "C", "D", "E"]
    together = fitted.together.toarray().tolist()
    assert together == [
        [0, 2, 1, 1, 0],
        [2, 0, 1, 1, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    ranking = sorted(order, key=lambda s: -fitted.popularity[order.index(s)])
    assert ranking == ["A", "C", "B", "D", "E"]


def test_hand_computed_recommendations(fitted: CoPurchaseRecommender) -> None:
    assert skus(fitted.recommend([1, 2, 3, 4, 5, 99], 3)) == {
        1: ["C", "D", "E"],
        2: ["B", "D", "E"],
        3: ["C", "E"],
        4: ["A", "D", "E"],
        5: ["A", "C", "B"],
        99: ["A", "C", "B"],
    }


def test_scores_exclude_what_was_bought(fitted: CoPurchaseRecommender) -> None:
    assert fitted.scores([2]).tolist() == [[-1, 3, -1, 1, 0]]


def test_k_limits_and_products_carry_their_catalogue_fields(fitted: CoPurchaseRecommender) -> None:
    one = fitted.recommend([2], 1)[2]
    assert one == [ProductRef("B", "Product B", 200, "USD", "Tea")]
    assert skus(fitted.recommend([1], 10)) == {1: ["C", "D", "E"]}
    assert skus(fitted.recommend([1], 0)) == {1: []}


def test_products_marked_not_to_recommend_are_skipped() -> None:
    fitted = CoPurchaseRecommender.fit(
        purchases(),
        catalogue(
            attributes={"C": '{"recommend": false}', "D": '{"available": false, "url": "x"}'}
        ),
        now=NOW,
    )
    # c1's co-purchases C and D are out: E is the only fill left.
    assert skus(fitted.recommend([1, 99], 3)) == {1: ["E"], 99: ["A", "B", "E"]}


def test_urls_and_images_come_from_product_attributes() -> None:
    attributes = {
        "B": '{"url": "https://shop.example/b", "image_url": "https://cdn.example/b.jpg"}'
    }
    fitted = CoPurchaseRecommender.fit(purchases(), catalogue(attributes=attributes), now=NOW)
    top = fitted.recommend([2], 1)[2][0]
    assert (top.url, top.image) == ("https://shop.example/b", "https://cdn.example/b.jpg")
    assert top.as_context() == {
        "sku": "B", "name": "Product B", "price": 200, "currency": "USD", "category": "Tea",
        "url": "https://shop.example/b", "image": "https://cdn.example/b.jpg",
    }  # fmt: skip


def test_purchases_after_now_are_ignored() -> None:
    later = [*BASKETS, (1, "E", 50, -5)]  # five days in the future of NOW
    fitted = CoPurchaseRecommender.fit(purchases(later), catalogue(), now=NOW)
    assert skus(fitted.recommend([1], 3)) == {1: ["C", "D", "E"]}


def test_popularity_window() -> None:
    """With a 365-day window E's 9 units count: E becomes the most popular product."""
    fitted = CoPurchaseRecommender.fit(purchases(), catalogue(), now=NOW, popularity_days=365)
    assert skus(fitted.recommend([99, 1], 3)) == {99: ["E", "A", "C"], 1: ["C", "D", "E"]}


def test_a_store_without_a_catalogue_recommends_line_skus() -> None:
    rows = purchases().with_columns(
        pl.concat_str(pl.lit("Line "), pl.col("sku")).alias("name"),
        pl.lit(250, pl.Int64).alias("unit_price_minor"),
        pl.lit("EUR").alias("currency"),
    )
    fitted = CoPurchaseRecommender.fit(rows, catalogue("")[:0], now=NOW)
    assert fitted.recommend([2], 1)[2] == [ProductRef("B", "Line B", 250, "EUR")]


def test_empty_store_and_chunked_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = CoPurchaseRecommender.fit(purchases([]), catalogue("")[:0], now=NOW)
    assert empty.recommend([1, 2], 3) == {1: [], 2: []}
    fitted = CoPurchaseRecommender.fit(purchases(), catalogue(), now=NOW)
    whole = fitted.recommend([1, 2, 3, 4, 5, 99], 3)
    monkeypatch.setattr(copurchase, "_CELLS", 10)  # two customers' score rows at a time
    assert fitted.recommend([1, 2, 3, 4, 5, 99], 3) == whole


def test_it_is_a_recommender(fitted: CoPurchaseRecommender) -> None:
    recommender: Recommender = fitted
    assert set(recommender.recommend([1], 2)) == {1}
