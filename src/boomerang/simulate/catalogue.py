"""The simulated catalogue: categories, products, prices, and consumables' lifespans.

Why prices are spread log-uniformly inside each category: baskets are built by choosing,
for each line's target price, one of the two products whose prices bracket it (with the
probability that makes the expected price equal the target), so the merchandise value of an
order tracks its gamma-gamma draw closely when prices are dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class Category:
    name: str
    code: str
    popularity: float  # share of line picks when no favourite applies
    low: float  # price range, currency major units
    high: float
    lifespans: tuple[int, ...]  # days one unit lasts; empty for durable goods
    nouns: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category(
        "Coffee",
        "COF",
        0.16,
        11.0,
        48.0,
        (21, 30, 45, 60),
        ("Espresso Beans", "Filter Roast", "Cold Brew Pack", "Decaf Beans", "Single Origin"),
    ),
    Category(
        "Tea",
        "TEA",
        0.10,
        7.0,
        36.0,
        (30, 45, 60),
        ("Green Tea", "Earl Grey", "Chai Blend", "Herbal Infusion", "Matcha"),
    ),
    Category(
        "Skincare",
        "SKN",
        0.14,
        12.0,
        85.0,
        (30, 45, 60, 90),
        ("Face Serum", "Day Cream", "Cleanser", "Body Lotion", "Sunscreen"),
    ),
    Category(
        "Supplements",
        "SUP",
        0.08,
        14.0,
        60.0,
        (30, 60, 90),
        ("Multivitamin", "Omega-3", "Protein Powder", "Magnesium", "Vitamin D"),
    ),
    Category(
        "Apparel",
        "APP",
        0.20,
        18.0,
        160.0,
        (),
        ("T-Shirt", "Hoodie", "Linen Shirt", "Chinos", "Knit Sweater", "Rain Jacket"),
    ),
    Category(
        "Accessories",
        "ACC",
        0.12,
        9.0,
        120.0,
        (),
        ("Tote Bag", "Beanie", "Wallet", "Sunglasses", "Scarf", "Water Bottle"),
    ),
    Category(
        "Home",
        "HOM",
        0.12,
        12.0,
        260.0,
        (),
        ("Ceramic Mug", "Pour-Over Kettle", "Throw Blanket", "Candle", "Grinder", "Vase"),
    ),
    Category(
        "Gifts",
        "GFT",
        0.08,
        10.0,
        90.0,
        (),
        ("Gift Box", "Tasting Set", "Starter Kit", "Gift Card Holder", "Sampler"),
    ),
)

ADJECTIVES = (
    "Classic",
    "Organic",
    "Everyday",
    "Signature",
    "Limited",
    "Nordic",
    "Coastal",
    "Alpine",
    "Urban",
    "Heritage",
    "Sunrise",
    "Midnight",
)


@dataclass(frozen=True)
class Catalogue:
    """Products sorted by (category, price); arrays are indexed by product position."""

    frame: pl.DataFrame  # sku, name, category, price_minor, lifespan_days, category_idx
    category_start: I64  # first product of each category
    category_count: I64
    price: F64  # major units
    category: I64
    lifespan: I64  # days; 0 for durable goods

    @property
    def popularity(self) -> F64:
        w = np.array([c.popularity for c in CATEGORIES], dtype=np.float64)
        share: F64 = w / w.sum()
        return share

    @property
    def consumable_categories(self) -> I64:
        return np.array([i for i, c in enumerate(CATEGORIES) if c.lifespans], dtype=np.int64)

    def nearest(self, rng: np.random.Generator, category: I64, target: F64) -> I64:
        """Per line: a product of ``category`` whose price brackets ``target`` (unbiased).

        The upper neighbour is chosen with probability (target - lower) / (upper - lower), so
        the expected price equals the target inside the category's price range.
        """
        table = self._ceiling_table()
        width = table.shape[1]
        cents = np.minimum(np.ceil(target * 100.0), width - 1).astype(np.int64)
        upper = table.ravel()[category * width + cents]
        first = self.category_start[category]
        lower = np.maximum(upper - 1, first)
        gap = self.price[upper] - self.price[lower]
        share = np.divide(target - self.price[lower], gap, out=np.ones_like(target), where=gap > 0)
        chosen: I64 = np.where(rng.random(len(target)) < share, upper, lower)
        return chosen

    def _ceiling_table(self) -> I64:
        """[category, cents] -> first product of the category priced at least that much."""
        cents = np.round(self.price * 100).astype(np.int64)
        top = int(cents.max()) + 1
        table = np.empty((len(self.category_start), top), dtype=np.int64)
        grid = np.arange(top)
        for c, (start, count) in enumerate(
            zip(self.category_start, self.category_count, strict=True)
        ):
            prices = cents[start : start + count]
            table[c] = start + np.minimum(np.searchsorted(prices, grid), count - 1)
        return table

    def random_products(self, rng: np.random.Generator, category: I64) -> I64:
        """A uniformly chosen product of each given category."""
        pick = (rng.random(len(category)) * self.category_count[category]).astype(np.int64)
        return self.category_start[category] + pick


def build_catalogue(rng: np.random.Generator, products: int) -> Catalogue:
    """About ``products`` products spread over the categories by popularity (at least 6 each)."""
    pop = np.array([c.popularity for c in CATEGORIES])
    counts = np.maximum(6, np.round(products * pop / pop.sum()).astype(np.int64))
    rows: list[tuple[str, str, str, int, int | None, int]] = []
    for ci, (cat, n) in enumerate(zip(CATEGORIES, counts, strict=True)):
        raw = np.exp(rng.uniform(np.log(cat.low), np.log(cat.high), size=int(n)))
        # Charm prices: 24.95, 39.00, ...
        cents = np.floor(raw).astype(np.int64) * 100 + np.where(rng.random(int(n)) < 0.7, 95, 0)
        nouns = rng.integers(0, len(cat.nouns), size=int(n))
        adjectives = rng.integers(0, len(ADJECTIVES), size=int(n))
        spans = rng.integers(0, max(len(cat.lifespans), 1), size=int(n))
        for k in range(int(n)):
            life = cat.lifespans[spans[k]] if cat.lifespans else None
            name = f"{ADJECTIVES[adjectives[k]]} {cat.nouns[nouns[k]]}"
            if life is not None:
                name += f" ({life}-day supply)"
            rows.append((f"{cat.code}-{k + 1:04d}", name, cat.name, int(cents[k]), life, ci))
    frame = pl.DataFrame(
        rows,
        schema={
            "sku": pl.String,
            "name": pl.String,
            "category": pl.String,
            "price_minor": pl.Int64,
            "lifespan_days": pl.Int64,
            "category_idx": pl.Int64,
        },
        orient="row",
    ).sort("category_idx", "price_minor", "sku")
    category = frame["category_idx"].to_numpy().astype(np.int64)
    start = np.searchsorted(category, np.arange(len(CATEGORIES))).astype(np.int64)
    return Catalogue(
        frame=frame,
        category_start=start,
        category_count=counts.astype(np.int64),
        price=frame["price_minor"].to_numpy().astype(np.float64) / 100.0,
        category=category,
        lifespan=frame["lifespan_days"].fill_null(0).to_numpy().astype(np.int64),
    )
