"""The recommender interface the campaign context builder calls, and the product it returns.

A recommender is fitted once (per campaign tick) and then asked for many customers at a
time: ``recommend(customer_ids, k)`` -> up to ``k`` products per customer, best first. A
later recommender replaces the co-purchase one by implementing the same method.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ProductRef:
    """A recommended product as templates show it (prices in minor units)."""

    sku: str
    name: str
    price_minor: int | None = None
    currency: str | None = None
    category: str | None = None
    url: str | None = None
    image: str | None = None

    def as_context(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "name": self.name,
            "price": self.price_minor,
            "currency": self.currency,
            "category": self.category,
            "url": self.url,
            "image": self.image,
        }


class Recommender(Protocol):
    def recommend(self, customer_ids: Sequence[int], k: int) -> dict[int, list[ProductRef]]:
        """Up to ``k`` products per customer, best first; every id gets an entry."""
        ...


def product_attributes(raw: str | None) -> dict[str, Any]:
    """A product's ``attributes`` JSON (an object), or {} when absent or unreadable."""
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def recommendable(attributes: dict[str, Any]) -> bool:
    """False when the product's attributes say ``"recommend": false`` or
    ``"available": false``."""
    return attributes.get("recommend", True) is not False and (
        attributes.get("available", True) is not False
    )


def link_of(attributes: dict[str, Any]) -> tuple[str | None, str | None]:
    """The product's page and image URLs from its attributes (``url``; ``image`` or
    ``image_url``), when given."""
    url = attributes.get("url")
    image = attributes.get("image", attributes.get("image_url"))
    return (
        str(url) if isinstance(url, str) and url else None,
        str(image) if isinstance(image, str) and image else None,
    )
