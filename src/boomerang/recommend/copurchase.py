"""Customers who bought X also bought Y: item-item co-purchase counts, filled with popularity.

Fit (once per campaign tick, vectorised): B is the customers x products 0/1 matrix of who
bought what (orders not cancelled, placed up to ``now``); C = BᵀB with a zero diagonal, so
C[x, y] is the number of customers who bought both x and y. A customer's score for y is
Σ C[x, y] over the products x they bought; products they already bought are never
recommended. The best scores come first (ties: the more popular product, then the SKU);
when fewer than ``k`` products score above zero, the rest are the most popular products
(units sold in the last ``popularity_days``, then units ever, then SKU). A customer with no
purchases gets the most popular products.

Which products can be recommended: the store's catalogue (the products table) minus those
whose attributes say ``"recommend": false`` or ``"available": false``; a store without a
catalogue recommends the SKUs of its order lines (named and priced from the latest line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse
from sqlalchemy import Engine

from boomerang.domain.clock import MICROS_PER_DAY
from boomerang.recommend.base import ProductRef, link_of, product_attributes, recommendable
from boomerang.store.repos import recommend_source

POPULARITY_DAYS = 90
#: Dense score rows computed at once stay under ~16 MB.
_CELLS = 2_000_000


@dataclass
class CoPurchaseRecommender:
    """A fitted co-purchase recommender (see the module docstring)."""

    products: list[ProductRef]  # one per item index (SKU order)
    candidate: np.ndarray  # bool per item: may be recommended
    customers: dict[int, int]  # customer id -> row of ``bought``
    bought: sparse.csr_matrix  # customers x items, 0/1
    together: sparse.csr_matrix  # items x items co-purchase counts, zero diagonal
    popularity: np.ndarray  # int64 per item: higher = more popular (a strict ranking)

    @classmethod
    def fit(
        cls,
        purchases: pl.DataFrame,
        products: pl.DataFrame,
        *,
        now: int,
        popularity_days: int = POPULARITY_DAYS,
    ) -> CoPurchaseRecommender:
        """``purchases``: customer_id, sku, quantity, placed_at (and optionally name,
        unit_price_minor, currency for stores without a catalogue); ``products``: sku, name,
        category, price_minor, currency, attributes (JSON text)."""
        bought = purchases.filter(pl.col("placed_at") <= now)
        refs: dict[str, ProductRef] = {}
        for row in products.iter_rows(named=True):
            attributes = product_attributes(row.get("attributes"))
            if not recommendable(attributes):
                continue
            url, image = link_of(attributes)
            refs[str(row["sku"])] = ProductRef(
                sku=str(row["sku"]), name=str(row.get("name") or row["sku"]),
                price_minor=row.get("price_minor"), currency=row.get("currency") or None,
                category=row.get("category") or None, url=url, image=image,
            )  # fmt: skip
        if products.height == 0 and bought.height:
            refs = _refs_from_lines(bought)
        skus = sorted(set(refs) | set(bought["sku"].unique().to_list()))
        index = pl.DataFrame(
            {"sku": pl.Series(skus, dtype=pl.String), "item": np.arange(len(skus), dtype=np.int64)}
        )
        customer_ids = bought["customer_id"].unique().sort()
        rows = pl.DataFrame(
            {"customer_id": customer_ids, "row": np.arange(len(customer_ids), dtype=np.int64)}
        )
        pairs = (
            bought.select("customer_id", "sku")
            .unique()
            .join(rows, on="customer_id")
            .join(index, on="sku")
        )
        n_items = len(skus)
        matrix = sparse.csr_matrix(
            (
                np.ones(pairs.height, dtype=np.int64),
                (pairs["row"].to_numpy(), pairs["item"].to_numpy()),
            ),
            shape=(len(customer_ids), n_items),
        )
        together = (matrix.T @ matrix).tolil()
        together.setdiag(0)
        together = together.tocsr()
        together.eliminate_zeros()
        since = now - popularity_days * MICROS_PER_DAY
        units = (
            bought.group_by("sku")
            .agg(
                pl.col("quantity").filter(pl.col("placed_at") >= since).sum().alias("recent"),
                pl.col("quantity").sum().alias("ever"),
            )
            .join(index, on="sku", how="right")
            .fill_null(0)
            .sort("item")
        )
        # A strict ranking: recent units, then units ever, then SKU (ascending) -> higher
        # value = more popular.
        order = np.lexsort(
            (
                -np.arange(n_items),
                units["ever"].to_numpy(),
                units["recent"].to_numpy(),
            )
        )
        popularity = np.empty(n_items, dtype=np.int64)
        popularity[order] = np.arange(n_items, dtype=np.int64)
        candidate = np.array([s in refs for s in skus], dtype=bool)
        products_list = [refs.get(s) or ProductRef(sku=s, name=s) for s in skus]
        return cls(
            products=products_list,
            candidate=candidate,
            customers=dict(zip(customer_ids.to_list(), range(len(customer_ids)), strict=True)),
            bought=matrix,
            together=together,
            popularity=popularity,
        )

    def scores(self, customer_ids: Sequence[int]) -> np.ndarray:
        """Co-purchase scores (customers x items, int64; -1 where the customer bought it)."""
        n_items = len(self.products)
        out = np.zeros((len(customer_ids), n_items), dtype=np.int64)
        known = [(i, self.customers[c]) for i, c in enumerate(customer_ids) if c in self.customers]
        if known and n_items:
            at = np.array([i for i, _ in known])
            rows = self.bought[np.array([r for _, r in known])]
            out[at] = np.asarray((rows @ self.together).todense(), dtype=np.int64)
            mine = rows.nonzero()
            out[at[mine[0]], mine[1]] = -1
        return out

    def recommend(self, customer_ids: Sequence[int], k: int) -> dict[int, list[ProductRef]]:
        ids = list(customer_ids)
        n_items = len(self.products)
        result: dict[int, list[ProductRef]] = {c: [] for c in ids}
        if k <= 0 or n_items == 0 or not self.candidate.any():
            return result
        step = max(1, _CELLS // n_items)
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            score = self.scores(chunk)
            # Co-purchase score first, popularity breaks ties and fills: one int64 key.
            key = np.where(score >= 0, score * n_items + self.popularity, -1)
            key[:, ~self.candidate] = -1
            take = min(k, n_items)
            top = np.argpartition(-key, take - 1, axis=1)[:, :take]
            for row, customer in enumerate(chunk):
                picked = top[row][np.argsort(-key[row, top[row]], kind="stable")]
                result[customer] = [self.products[i] for i in picked if key[row, i] >= 0]
        return result


def _refs_from_lines(bought: pl.DataFrame) -> dict[str, ProductRef]:
    """Name and price of each SKU from its latest order line (a store without a catalogue)."""
    cols = set(bought.columns)
    latest = bought.sort("placed_at").group_by("sku").last()
    out = {}
    for row in latest.iter_rows(named=True):
        sku = str(row["sku"])
        out[sku] = ProductRef(
            sku=sku,
            name=str(row.get("name") or sku) if "name" in cols else sku,
            price_minor=row.get("unit_price_minor") if "unit_price_minor" in cols else None,
            currency=(row.get("currency") or None) if "currency" in cols else None,
        )
    return out


def fit_copurchase(
    engine: Engine, store_id: int, *, now: int, popularity_days: int = POPULARITY_DAYS
) -> CoPurchaseRecommender:
    """Fit on a store's purchases and catalogue (two Arrow reads)."""
    purchases = pl.from_arrow(recommend_source.read_purchases(engine, store_id))
    products = pl.from_arrow(recommend_source.read_products(engine, store_id))
    assert isinstance(purchases, pl.DataFrame) and isinstance(products, pl.DataFrame)
    return CoPurchaseRecommender.fit(purchases, products, now=now, popularity_days=popularity_days)
