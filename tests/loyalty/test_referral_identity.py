"""Referrals, the pure part: identity normalisation, fingerprints and the fraud rules, share
texts and links, money in words, when an order qualifies (docs/referrals.md)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from boomerang.domain.clock import MICROS_PER_DAY
from boomerang.errors import InputError
from boomerang.loyalty.program import Referrals, parse_program
from boomerang.loyalty.referrals import (
    CHANNELS,
    describe_reward,
    disqualification,
    fingerprint,
    fingerprints,
    format_money,
    fraud_reasons,
    normalise_address,
    normalise_email,
    normalise_phone,
    qualifying_amount,
    share_texts,
)

DAY = MICROS_PER_DAY


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("friendname@gmail.com", "friendname@gmail.com"),
        ("FriendName@GMAIL.com", "friendname@gmail.com"),  # case
        ("Friend.Name+promo@GMail.com", "friendname@gmail.com"),  # +tag, Gmail dots, case
        ("f.r.i.e.n.d.n.a.m.e@googlemail.com", "friendname@gmail.com"),  # Google's alias
        ("  friendname+a+b@gmail.com. ", "friendname@gmail.com"),
        ("Jane.Doe+shop@Example.com", "jane.doe@example.com"),  # dots count elsewhere
        ("jane@sub.example.com", "jane@sub.example.com"),
        ("not an email", None),
        ("@gmail.com", None),
        ("+tag@gmail.com", None),
    ],
)
def test_email_normalisation(raw: str, expected: str | None) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+1 (415) 555-0100", None, "+14155550100"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("415.555.0100", "us", "+14155550100"),
        ("001 415 555 0100", None, "+14155550100"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", "FR", "+442079460958"),  # written internationally: region unused
        ("4155550100", None, "4155550100"),  # no country known: the digits alone
        ("12", None, None),
    ],
)
def test_phone_normalisation(raw: str, region: str | None, expected: str | None) -> None:
    assert normalise_phone(raw, region) == expected


def test_address_normalisation_unifies_spelling_not_content() -> None:
    a = normalise_address("12 Main Street, Apartment #4, Springfield")
    assert a == "12 main st 4 springfield"
    for same in (
        "12 main st. apt 4 springfield",
        "12  MAIN   ST  #4,  Springfield",
        "12 Main St., Suite 4 - Springfield",
    ):
        assert normalise_address(same) == a
    assert normalise_address("Rue de l'Église 3") == "rue de l eglise 3"
    assert normalise_address("1 North Avenue") == normalise_address("1 N. Ave")
    assert normalise_address("14 Main Street") != a  # another house
    assert normalise_address(" ,. ") is None


def test_fingerprints_hash_the_normalised_value_per_store() -> None:
    one = fingerprints({"email": "Friend.Name+x@googlemail.com"}, salt="store:1")
    assert one == {("email", fingerprint("email", "friendname@gmail.com", "store:1"))}
    assert one == fingerprints({"email": "friendname@gmail.com"}, salt="store:1")
    assert one != fingerprints({"email": "friendname@gmail.com"}, salt="store:2")
    digest = next(iter(one))[1]
    assert len(digest) == 64 and "friendname" not in digest
    # Several values for one kind, blanks and unreadable ones skipped.
    many = fingerprints(
        {"email": ["a@x.com", "", "b@x.com"], "phone": "12", "device": " d1 ", "payment": None},
        salt="s",
    )
    assert {k for k, _ in many} == {"email", "device"} and len(many) == 3
    with pytest.raises(InputError, match="unknown identity signal 'ip'"):
        fingerprints({"ip": "1.2.3.4"}, salt="s")


def test_fraud_rules_email_and_phone_always_other_signals_within_the_window() -> None:
    now = 1_000 * DAY
    referrer = [
        ("email", "e1", now - 5_000 * DAY),  # long ago: still counts
        ("phone", "p1", now - 5_000 * DAY),
        ("payment", "c1", now - 10 * DAY),
        ("device", "d1", now - 366 * DAY),  # outside a 365-day window
        ("address", "a1", now - 365 * DAY),  # exactly at the edge: inside
    ]
    friend = {("email", "e1"), ("phone", "p1"), ("payment", "c1"), ("device", "d1"),
              ("address", "a1")}  # fmt: skip
    assert fraud_reasons(referrer, friend, now=now, window_days=365) == [
        "same_address", "same_email", "same_payment", "same_phone",
    ]  # fmt: skip
    assert fraud_reasons(referrer, {("device", "d1")}, now=now, window_days=400) == ["same_device"]
    assert fraud_reasons(referrer, {("email", "other")}, now=now, window_days=365) == []
    # The same hash under another kind is not a match.
    assert fraud_reasons(referrer, {("device", "e1")}, now=now, window_days=365) == []


def _config(**extra: object) -> Referrals:
    return Referrals.model_validate(
        {
            "enabled": True,
            "referrer_reward": {"kind": "amount_off", "value": 12500},
            "friend_reward": {"kind": "amount_off", "value": 2500},
            "link_base": "https://shop.example/r/",
            **extra,
        }
    )


def test_share_texts_carry_the_link_and_the_friend_reward_on_every_channel() -> None:
    shares = share_texts(_config(), code="ABCDEFGHJKMN", first_name="Jane", currency="USD")
    link = "https://shop.example/r/ABCDEFGHJKMN"
    assert list(shares) == list(CHANNELS)
    for channel, share in shares.items():
        assert link in share["text"], channel
        assert "$25.00 off your next order" in share["text"], channel
    assert shares["copy"]["url"] == link
    assert shares["facebook"]["url"] == (
        "https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2Fshop.example%2Fr%2FABCDEFGHJKMN"
    )
    assert shares["messenger"]["url"] == (
        "fb-messenger://share?link=https%3A%2F%2Fshop.example%2Fr%2FABCDEFGHJKMN"
    )
    wa = urlsplit(shares["whatsapp"]["url"])
    assert (wa.scheme, wa.netloc, wa.path) == ("https", "wa.me", "/")
    assert parse_qs(wa.query)["text"] == [shares["whatsapp"]["text"]]
    assert shares["sms"]["url"].startswith("sms:?&body=")
    assert unquote(shares["sms"]["url"].removeprefix("sms:?&body=")) == shares["sms"]["text"]
    mail = urlsplit(shares["email"]["url"])
    assert mail.scheme == "mailto" and " " not in shares["email"]["url"]
    query = parse_qs(mail.query)
    assert query["subject"] == ["Jane invited you"]
    assert query["body"] == [shares["email"]["text"]] and shares["email"]["text"].endswith("Jane")


def test_share_text_overrides_defaults_and_errors() -> None:
    config = _config(
        share_texts={"sms": "{first_name} says: {friend_reward}!", "copy": "Go {link}"},
        friend_reward={"kind": "percent_off", "value": 1250},
    )
    shares = share_texts(config, code="ABCDEFGHJKMN", first_name=None, currency="EUR")
    # No {link} in the override: appended, so the share still carries it.
    assert shares["sms"]["text"] == (
        "Your friend says: 12.5% off your next order! https://shop.example/r/ABCDEFGHJKMN"
    )
    assert shares["copy"]["text"] == "Go https://shop.example/r/ABCDEFGHJKMN"
    # Bad share texts are refused when the program is set, naming the field.
    for texts, message in (
        ({"sms": "{name}"}, r"referrals\.share_texts: .*sms: unknown placeholder \{name\}"),
        ({"tiktok": "x"}, r"referrals\.share_texts: .*unknown share channel 'tiktok'"),
        ({"copy": "{oops"}, r"referrals\.share_texts: .*copy: "),
    ):
        with pytest.raises(InputError, match=message):
            parse_program({"referrals": {"enabled": True, "share_texts": texts}})
    # No friend reward: the defaults promise nothing.
    bare = share_texts(
        _config(friend_reward=None), code="ABCDEFGHJKMN", first_name="Jane", currency="USD"
    )
    assert all("off" not in s["text"] for s in bare.values())


def test_money_and_rewards_in_words() -> None:
    assert format_money(2500, "USD") == "$25.00"
    assert format_money(12500000, "USD") == "$125,000.00"
    assert format_money(2500, "JPY") == "¥2,500"
    assert format_money(2500, "CHF") == "25.00 CHF"
    assert format_money(1234, "KWD") == "1.234 KWD"
    cfg = _config(
        referrer_reward={"kind": "points", "value": 1500},
        friend_reward={"kind": "store_credit", "value": 1000},
    )
    assert describe_reward(cfg.referrer_reward, "USD") == "1,500 points"
    assert describe_reward(cfg.friend_reward, "GBP") == "£10.00 store credit"
    shipping = _config(friend_reward={"kind": "free_shipping"}).friend_reward
    assert describe_reward(shipping, "USD") == "free shipping on your next order"
    assert describe_reward(None, "USD") == ""


def _order(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "status": "paid", "subtotal_minor": 10_000, "discount_minor": 1_000,
        "shipping_minor": 500, "tax_minor": 0, "total_minor": 9_500, "refunded_minor": 0,
    }  # fmt: skip
    return {**base, **kw}


def test_when_an_order_qualifies() -> None:
    assert qualifying_amount(_order()) == 9_000  # items after discounts, no shipping
    assert disqualification(_order(), 9_000) is None
    assert disqualification(_order(), 9_001) == (
        "below the minimum order (9000 < 9001 minor units)"
    )
    assert disqualification(_order(status="cancelled"), 0) == "cancelled"
    assert disqualification(_order(refunded_minor=9_500), 0) == "refunded"
    assert disqualification(_order(status="refunded"), 0) == "refunded"
    # A partial refund: pro-rata, 9000 x 4750 / 9500 = 4500.
    partial = _order(refunded_minor=4_750, status="partially_refunded")
    assert qualifying_amount(partial) == 4_500
    assert disqualification(partial, 4_500) is None
    assert disqualification(partial, 5_000) is not None
