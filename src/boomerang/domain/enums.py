"""Closed vocabularies stored as text; the values are part of the data contract."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class AccountStatus(StrEnum):
    GUEST = "guest"
    REGISTERED = "registered"
    DISABLED = "disabled"


class OrderStatus(StrEnum):
    """Where an order stands financially; cancelled orders never count as revenue."""

    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class SalesChannel(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class EventType(StrEnum):
    """Site and app events we understand; other types are stored as given."""

    VISIT = "visit"
    PRODUCT_VIEWED = "product_viewed"
    ADDED_TO_CART = "added_to_cart"
    CHECKOUT_STARTED = "checkout_started"
    ORDER_PLACED = "order_placed"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    REVIEW_WRITTEN = "review_written"
    SOCIAL_SHARE = "social_share"
    REFERRAL = "referral"
    SIGNED_UP = "signed_up"
    ACCOUNT_CREATED = "account_created"
