"""Two-sided referrals, the pure part: identity normalisation, fingerprints, fraud rules,
share texts and links, and when a friend's order qualifies (docs/referrals.md).

Nothing here touches the database; `services.referrals` stores what these functions compute.

Identity signals are compared as fingerprints: ``sha256("boomerang-referrals" | salt | kind |
normalised value)`` in hex, with the store as the salt. Only the hashes are kept. The salt
makes the same person's hashes differ between two stores of one database (no linking across
tenants, no precomputed table of common emails fits every store); it is not a secret, so it
does not make a low-entropy value such as an email unguessable to someone holding the
database, which holds the plain email in `customers` anyway.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import phonenumbers

from boomerang.domain.clock import MICROS_PER_DAY
from boomerang.domain.money import currency_exponent
from boomerang.errors import InputError
from boomerang.loyalty.program import SHARE_CHANNELS, ReferralReward, Referrals, order_base_minor


class Status(StrEnum):
    """A referral's state (stored as text in ``referrals.status``)."""

    SIGNED_UP = "signed_up"  # the friend signed up with a code; no qualifying order yet
    ORDERED = "ordered"  # a qualifying first order; rewards wait for the refund window
    FLAGGED = "flagged"  # a fraud rule matched: held for review, never paid without one
    PAYING = "paying"  # the release job claimed it and is paying both sides
    REWARDED = "rewarded"  # both sides paid
    VOID = "void"  # the order was refunded or cancelled within the window: nothing paid
    REJECTED = "rejected"  # a reviewer refused it: nothing paid


#: Share channels, in the order they are shown.
CHANNELS = SHARE_CHANNELS
#: Identity signals a fraud check compares.
SIGNALS = ("email", "phone", "address", "payment", "device")
#: Signals that match whenever they were seen; the others only within the fraud window.
TIMELESS = frozenset({"email", "phone"})

# -- normalisation -------------------------------------------------------------------------------

_GMAIL = frozenset({"gmail.com", "googlemail.com"})


def normalise_email(raw: str) -> str | None:
    """Lower case; the ``+tag`` dropped (any provider: plus-addressing reaches the same
    mailbox at Gmail, Outlook, iCloud, Fastmail, ...); for Gmail, dots in the local part
    dropped and ``googlemail.com`` read as ``gmail.com``. None when it is not an address."""
    text = raw.strip().casefold()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or " " in text:
        return None
    local = local.split("+", 1)[0]
    domain = domain.rstrip(".")
    if domain in _GMAIL:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}" if local else None


def normalise_phone(raw: str, region: str | None = None) -> str | None:
    """E.164 (``+14155550100``) through libphonenumber, reading a national number in the
    customer's country (``region``, ISO 3166 alpha-2). When it cannot be read, the digits
    alone (``00`` in front read as ``+``), so the same unreadable number still matches
    itself. None when there are fewer than 5 digits."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, (region or "").upper() or None)
        if phonenumbers.is_possible_number(number):
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    except phonenumbers.NumberParseException:
        pass
    digits = re.sub(r"\D", "", text)
    if len(digits) < 5:
        return None
    if text.startswith("+") or digits.startswith("00"):
        return "+" + digits.removeprefix("00")
    return digits


# Words of a street address written two ways; each maps to one spelling. Unit designators
# (apartment, suite, unit, #) are dropped: "12 Main St #4" = "12 Main Street, Apt. 4".
_ADDRESS_WORDS = {
    "street": "st", "str": "st", "avenue": "ave", "av": "ave", "road": "rd", "boulevard": "blvd",
    "drive": "dr", "lane": "ln", "court": "ct", "place": "pl", "square": "sq", "terrace": "ter",
    "highway": "hwy", "parkway": "pkwy", "circle": "cir", "mount": "mt", "saint": "st",
    "north": "n", "south": "s", "east": "e", "west": "w",
    "floor": "fl", "building": "bldg",
}  # fmt: skip
_UNIT_WORDS = frozenset({"apartment", "apt", "suite", "ste", "unit", "#"})


def normalise_address(raw: str) -> str | None:
    """Case-folded, accents dropped, punctuation and runs of whitespace made one space,
    common words unified (street/st, avenue/ave, road/rd, north/n, ...), unit designators
    (apartment, apt, suite, unit, #) dropped. None when nothing is left."""
    text = unicodedata.normalize("NFKD", raw.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("#", " # ")
    tokens = [t for t in re.split(r"[^\w#]+|_", text) if t]
    words = [_ADDRESS_WORDS.get(t, t) for t in tokens if t not in _UNIT_WORDS]
    return " ".join(words) or None


def normalise_token(raw: str) -> str | None:
    """Payment and device fingerprints are opaque (and may be case-sensitive): trimmed only."""
    text = raw.strip()
    return text or None


def normalise(kind: str, raw: str, region: str | None = None) -> str | None:
    """One signal normalised by its kind (email, phone, address, payment, device)."""
    if kind == "email":
        return normalise_email(raw)
    if kind == "phone":
        return normalise_phone(raw, region)
    if kind == "address":
        return normalise_address(raw)
    if kind in ("payment", "device"):
        return normalise_token(raw)
    raise InputError(f"unknown identity signal {kind!r}", hint="one of: " + ", ".join(SIGNALS))


def fingerprint(kind: str, value: str, salt: str) -> str:
    """sha256 hex of a normalised value, salted with the store (module docstring)."""
    body = "\x1f".join(("boomerang-referrals", salt, kind, value))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def fingerprints(
    signals: Mapping[str, str | Iterable[str] | None], *, salt: str, region: str | None = None
) -> set[tuple[str, str]]:
    """(kind, hash) of every signal given (a value or several per kind); empty and
    unreadable values are skipped, an unknown kind is an `InputError`."""
    out: set[tuple[str, str]] = set()
    for kind, raw in signals.items():
        if kind not in SIGNALS:
            raise InputError(
                f"unknown identity signal {kind!r}", hint="one of: " + ", ".join(SIGNALS)
            )
        values = [raw] if isinstance(raw, str) else list(raw or [])
        for value in values:
            norm = normalise(kind, value, region) if value else None
            if norm:
                out.add((kind, fingerprint(kind, norm, salt)))
    return out


def fraud_reasons(
    referrer: Iterable[tuple[str, str, int]],
    friend: Iterable[tuple[str, str]],
    *,
    now: int,
    window_days: int,
) -> list[str]:
    """Why a friend looks like the referrer: ``same_<kind>`` for every signal kind where a
    friend's fingerprint equals one of the referrer's (kind, hash, seen_at). Email and phone
    match whenever seen; address, payment and device only when the referrer's was seen
    within ``window_days`` before ``now``."""
    since = now - window_days * MICROS_PER_DAY
    theirs = {(kind, value) for kind, value, seen in referrer if kind in TIMELESS or seen >= since}
    return sorted({f"same_{kind}" for kind, value in friend if (kind, value) in theirs})


# -- money, rewards and share texts --------------------------------------------------------------

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩"}


def format_money(minor: int, currency: str) -> str:
    """``2500, USD`` -> ``$25.00``; currencies without a symbol here: ``25.00 CHF``."""
    exponent = currency_exponent(currency)
    amount = Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))
    text = f"{amount:,f}"
    symbol = _SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def describe_reward(reward: ReferralReward | None, currency: str) -> str:
    """What a side gets, in words: ``$25.00 off your next order``, ``10% off your next
    order``, ``free shipping on your next order``, ``500 points``, ``$25.00 store credit``."""
    if reward is None:
        return ""
    if reward.kind == "amount_off":
        return f"{format_money(reward.value, currency)} off your next order"
    if reward.kind == "percent_off":
        percent = (Decimal(reward.value) / 100).normalize()
        return f"{percent:f}% off your next order"
    if reward.kind == "free_shipping":
        return "free shipping on your next order"
    if reward.kind == "points":
        return f"{reward.value:,} points"
    return f"{format_money(reward.value, currency)} store credit"


#: Default share texts when the friend gets a reward (the program's `share_texts` override
#: them per channel). Placeholders: {first_name}, {link}, {friend_reward}.
DEFAULT_TEXTS = {
    "email": "Hi! I shop here and I think you'll like it too. Place your first order "
    "through my link and you'll get {friend_reward}: {link}\n\n{first_name}",
    "facebook": "I love this shop. Place your first order through my link and get "
    "{friend_reward}: {link}",
    "messenger": "Hey! Place your first order through my link and you'll get "
    "{friend_reward}: {link}",
    "sms": "{first_name} here: order through my link and you'll get {friend_reward}. {link}",
    "whatsapp": "Hey! Place your first order through my link and you'll get "
    "{friend_reward}: {link}",
    "copy": "Place your first order through my link and get {friend_reward}: {link}",
}
#: When the friend gets nothing, the texts do not promise anything.
DEFAULT_TEXTS_NO_REWARD = {
    "email": "Hi! I shop here and I think you'll like it too: {link}\n\n{first_name}",
    "facebook": "I love this shop: {link}",
    "messenger": "Hey! I think you'll like this shop: {link}",
    "sms": "{first_name} here: I think you'll like this shop. {link}",
    "whatsapp": "Hey! I think you'll like this shop: {link}",
    "copy": "{link}",
}
EMAIL_SUBJECT = "{first_name} invited you"
FRIEND = "Your friend"  # {first_name} when the referrer has none on file
_FIELDS = frozenset({"first_name", "link", "friend_reward"})


def referral_link(link_base: str, code: str) -> str:
    """The share link: the program's ``link_base`` followed by the code."""
    return f"{link_base}{code}"


def render(template: str, values: Mapping[str, str], where: str) -> str:
    """Fill a share text; an unknown placeholder or a stray brace is an `InputError`
    naming ``where`` (the program field)."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise InputError(
            f"{where}: {exc}", hint="write {{ and }} for a literal brace in a share text"
        ) from None
    unknown = names - _FIELDS
    if unknown:
        raise InputError(
            f"{where}: unknown placeholder {{{sorted(unknown)[0]}}}",
            hint="share texts may use {first_name}, {link} and {friend_reward}",
        )
    return template.format(**values)


def share_url(channel: str, link: str, text: str, subject: str = "") -> str:
    """The URL that opens ``channel`` with the text (or, for Facebook and Messenger, which
    take no prefilled text, the link) filled in; for ``copy``, the link itself."""

    def q(s: str) -> str:
        return quote(s, safe="")

    if channel == "email":
        return f"mailto:?subject={q(subject)}&body={q(text)}"
    if channel == "facebook":
        return f"https://www.facebook.com/sharer/sharer.php?u={q(link)}"
    if channel == "messenger":
        return f"fb-messenger://share?link={q(link)}"
    if channel == "sms":
        return f"sms:?&body={q(text)}"
    if channel == "whatsapp":
        return f"https://wa.me/?text={q(text)}"
    if channel == "copy":
        return link
    raise InputError(f"unknown share channel {channel!r}", hint="one of: " + ", ".join(CHANNELS))


def share_texts(
    config: Referrals, *, code: str, first_name: str | None, currency: str
) -> dict[str, dict[str, str]]:
    """Per channel: the text (the program's override, else the default) and the URL that
    shares it. A text without {link} gets the link appended, so every share carries it."""
    unknown = set(config.share_texts) - set(CHANNELS)
    if unknown:
        raise InputError(
            f"referrals.share_texts: unknown channel {sorted(unknown)[0]!r}",
            hint="channels: " + ", ".join(CHANNELS),
        )
    link = referral_link(config.link_base, code)
    values = {
        "first_name": (first_name or "").strip() or FRIEND,
        "link": link,
        "friend_reward": describe_reward(config.friend_reward, currency),
    }
    defaults = DEFAULT_TEXTS if config.friend_reward is not None else DEFAULT_TEXTS_NO_REWARD
    subject = render(EMAIL_SUBJECT, values, "email subject")
    out: dict[str, dict[str, str]] = {}
    for channel in CHANNELS:
        template = config.share_texts.get(channel, defaults[channel])
        text = render(template, values, f"referrals.share_texts.{channel}")
        if link not in text:
            text = f"{text} {link}".strip()
        out[channel] = {"text": text, "url": share_url(channel, link, text, subject)}
    out["email"]["subject"] = subject
    return out


# -- the friend's order --------------------------------------------------------------------------


def qualifying_amount(order: Mapping[str, Any]) -> int:
    """Items after discounts (no shipping, no tax), pro-rata to what was not refunded,
    floored, in minor units."""
    base = order_base_minor(dict(order), "net")
    total, refunded = int(order["total_minor"]), int(order["refunded_minor"])
    if total <= 0:
        return base
    return base * max(0, total - refunded) // total


def disqualification(order: Mapping[str, Any], min_order_minor: int) -> str | None:
    """Why an order does not (or no longer) qualify: cancelled, refunded (fully), or below
    the minimum after refunds; None when it qualifies."""
    if order["status"] == "cancelled":
        return "cancelled"
    total, refunded = int(order["total_minor"]), int(order["refunded_minor"])
    if order["status"] == "refunded" or (total > 0 and refunded >= total):
        return "refunded"
    amount = qualifying_amount(order)
    if amount < min_order_minor:
        return f"below the minimum order ({amount} < {min_order_minor} minor units)"
    return None


def qualifies_at(placed_at: int, refund_window_days: int) -> int:
    """When the rewards of an order placed at ``placed_at`` may be paid."""
    return placed_at + refund_window_days * MICROS_PER_DAY
