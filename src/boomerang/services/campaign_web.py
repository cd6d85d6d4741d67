"""What the links in a message do: unsubscribe, the preference centre, the open pixel and
tracked clicks; and the links themselves, signed while a message is rendered.

Every link carries a token (`boomerang.campaigns.tokens`) signed with the store's key, kept
in ``campaign_settings.config["signing_key"]`` (created on first use). A token that does not
verify, names a message that is not its customer's, or belongs to another store than the
one a caller serves raises `InvalidToken` (a `NotFoundError`; the web app answers 404).

- `unsubscribe`: the message's channel is withdrawn (one ``consents`` row, source
  ``unsubscribe link``) unless its latest consent already is; one ``unsubscribe`` event per
  message. Repeating it changes nothing. `unsubscribe_page` only reads.
- `preferences` / `set_preferences`: per-channel opt-in/out (email, sms, push), written as
  consent rows (source ``preference centre``) for the channels that change.
- `record_open`: an ``open`` event (a second hit records a second open).
- `click`: a ``click`` event and the signed target URL; only that URL, never one from the
  request (no open redirect).
- `links_for`: the URLs for one message, plus ``track_click`` for its links.

docs/channels.md describes the tokens and the endpoints.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from boomerang.campaigns import tokens
from boomerang.campaigns.mime import list_unsubscribe_headers
from boomerang.campaigns.tokens import InvalidToken, Purpose, Signer, TokenData
from boomerang.domain.clock import now_micros
from boomerang.domain.enums import ConsentStatus
from boomerang.errors import ConfigError, InputError, NotFoundError
from boomerang.store.engine import write_transaction
from boomerang.store.repos import campaign_web as repo

#: Channels the preference centre offers.
PREFERENCE_CHANNELS = ("email", "sms", "push")
UNSUBSCRIBE_SOURCE = "unsubscribe link"
PREFERENCE_SOURCE = "preference centre"

_lock = threading.Lock()
_signers: weakref.WeakKeyDictionary[Engine, dict[int, Signer]] = weakref.WeakKeyDictionary()
_store_ids: weakref.WeakKeyDictionary[Engine, dict[str, int]] = weakref.WeakKeyDictionary()


# -- keys ---------------------------------------------------------------------------------------


def _store_id(engine: Engine, store: str | int) -> int:
    if isinstance(store, int):
        return store
    with _lock:
        known = _store_ids.setdefault(engine, {}).get(store)
    if known is not None:
        return known
    with engine.connect() as conn:
        found = repo.store_id_named(conn, store)
    if found is None:
        raise NotFoundError(f"no store named {store!r}", hint="list stores with `boomerang stores`")
    with _lock:
        _store_ids.setdefault(engine, {})[store] = found
    return found


def store_id(engine: Engine, store: str) -> int:
    """The id of the store named ``store`` (a `NotFoundError` when there is none)."""
    return _store_id(engine, store)


def _cached(engine: Engine, store_id: int) -> Signer | None:
    with _lock:
        return _signers.get(engine, {}).get(store_id)


def _remember(engine: Engine, signer: Signer) -> Signer:
    with _lock:
        return _signers.setdefault(engine, {}).setdefault(signer.store_id, signer)


def signer(engine: Engine, store: str | int) -> Signer:
    """The store's token signer; its key is created (and stored) on first use."""
    store_id = _store_id(engine, store)
    found = _cached(engine, store_id)
    if found is not None:
        return found
    with engine.connect() as conn:
        encoded = repo.signing_key(conn, store_id)
    if encoded is None:
        with write_transaction(engine) as conn:
            encoded = repo.ensure_signing_key(
                conn, store_id, tokens.encode_key(tokens.new_key()), now_micros()
            )
    return _remember(engine, Signer(store_id, tokens.decode_key(encoded)))


def _verifier(engine: Engine, store_id: int) -> Signer | None:
    """The store's signer when it has a key (never creates one: verifying needs none)."""
    found = _cached(engine, store_id)
    if found is not None:
        return found
    with engine.connect() as conn:
        encoded = repo.signing_key(conn, store_id)
    if encoded is None:
        return None
    return _remember(engine, Signer(store_id, tokens.decode_key(encoded)))


def _open(engine: Engine, token: str, purpose: Purpose, store: str | None) -> TokenData:
    """Verify a token: signed by its store's key, for ``purpose``, of the served store."""
    store_id = tokens.peek_store(token)
    verifier = _verifier(engine, store_id)
    if verifier is None:
        raise InvalidToken("unknown store")
    data = verifier.verify(token, purpose)
    if store is not None:
        try:
            served = _store_id(engine, store)
        except NotFoundError:
            raise InvalidToken("another store") from None
        if served != data.store_id:
            raise InvalidToken("another store")
    return data


# -- links --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    """The signed URLs of one message. ``one_click`` is the List-Unsubscribe target (the
    same page as ``unsubscribe``: GET shows a confirmation, POST unsubscribes)."""

    unsubscribe: str
    one_click: str
    preferences: str
    pixel: str
    outbox_id: int
    customer_id: int
    base_url: str
    _signer: Signer = field(repr=False)

    def track_click(self, url: str) -> str:
        """The signed click URL for ``url``; anything but an absolute http(s) URL (mailto:,
        tel:, anchors, template placeholders) and our own links are returned unchanged."""
        stripped = url.strip()
        if stripped.startswith(self.base_url + "/"):
            return url
        try:
            token = self._signer.sign(Purpose.CLICK, self.outbox_id, self.customer_id, stripped)
        except ValueError:
            return url
        return f"{self.base_url}/c/{token}"

    def headers(self) -> dict[str, str]:
        """``List-Unsubscribe`` (+ ``List-Unsubscribe-Post`` for an https base URL)."""
        return list_unsubscribe_headers(self.one_click)


def _base_url(engine: Engine, store_id: int, base_url: str | None) -> str:
    if base_url is None:
        with engine.connect() as conn:
            base_url = repo.load_config(conn, store_id).get("base_url")
    if not base_url:
        raise ConfigError(
            "no public base URL for unsubscribe and tracking links",
            hint='set campaign setting "base_url" (e.g. https://links.shop.example) to where '
            "`boomerang serve` is reachable",
        )
    base = str(base_url).rstrip("/")
    try:
        tokens.check_target(base + "/")
    except ValueError as exc:
        raise ConfigError(
            f"base_url is not usable: {exc}", hint="use https://host[:port][/path]"
        ) from None
    return base


def links_for(
    engine: Engine, store: str | int, outbox_id: int, customer_id: int, base_url: str | None = None
) -> Links:
    """Unsubscribe, one-click, preference and pixel URLs for one message, and
    ``track_click``. ``base_url`` defaults to the store's ``base_url`` campaign setting.
    The key and base URL are cached per engine, so this costs no query per message once
    ``base_url`` is passed."""
    s = signer(engine, store)
    base = _base_url(engine, s.store_id, base_url)
    unsubscribe = f"{base}/u/{s.sign(Purpose.UNSUBSCRIBE, outbox_id, customer_id)}"
    return Links(
        unsubscribe=unsubscribe,
        one_click=unsubscribe,
        preferences=f"{base}/p/{s.sign(Purpose.PREFERENCES, outbox_id, customer_id)}",
        pixel=f"{base}/o/{s.sign(Purpose.OPEN, outbox_id, customer_id)}.gif",
        outbox_id=outbox_id,
        customer_id=customer_id,
        base_url=base,
        _signer=s,
    )


# -- pages --------------------------------------------------------------------------------------


def _mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def _mask_phone(phone: str) -> str:
    return f"•••{phone[-4:]}" if len(phone) > 4 else "•••"


def _message(conn: Connection, data: TokenData) -> dict[str, Any]:
    found = repo.message_of(conn, data.store_id, data.outbox_id, data.customer_id)
    if found is None:
        raise InvalidToken("no such message")
    return found


@dataclass(frozen=True)
class UnsubscribePage:
    store_name: str
    channel: str
    address: str  # masked
    unsubscribed: bool  # the channel's latest consent is already withdrawn
    preferences_token: str


@dataclass(frozen=True)
class Unsubscribed:
    store_name: str
    channel: str
    changed: bool  # False: it was withdrawn already, nothing written
    preferences_token: str


def _address(contact: dict[str, Any] | None, channel: str) -> str:
    if not contact:
        return ""
    if channel == "email" and contact.get("email"):
        return _mask_email(str(contact["email"]))
    if channel == "sms" and contact.get("phone"):
        return _mask_phone(str(contact["phone"]))
    return ""


def _preferences_token(engine: Engine, data: TokenData) -> str:
    s = _verifier(engine, data.store_id)
    assert s is not None  # the token verified with it
    return s.sign(Purpose.PREFERENCES, data.outbox_id, data.customer_id)


def unsubscribe_page(engine: Engine, token: str, *, store: str | None = None) -> UnsubscribePage:
    """What the confirmation page shows; reads only (a GET never unsubscribes)."""
    data = _open(engine, token, Purpose.UNSUBSCRIBE, store)
    with engine.connect() as conn:
        channel = str(_message(conn, data)["channel"])
        latest = repo.latest_consents(conn, data.store_id, data.customer_id).get(channel)
        contact = repo.customer_contact(conn, data.store_id, data.customer_id)
        name = repo.store_name(conn, data.store_id) or ""
    return UnsubscribePage(
        store_name=name,
        channel=channel,
        address=_address(contact, channel),
        unsubscribed=latest == ConsentStatus.WITHDRAWN,
        preferences_token=_preferences_token(engine, data),
    )


def unsubscribe(
    engine: Engine, token: str, *, one_click: bool, store: str | None = None
) -> Unsubscribed:
    """Withdraw the message's channel for its customer (RFC 8058 one-click or the page's
    button: ``one_click`` is kept as the event's ``url``: ``one-click`` or ``page``)."""
    data = _open(engine, token, Purpose.UNSUBSCRIBE, store)
    now = now_micros()
    with write_transaction(engine) as conn:
        channel = str(_message(conn, data)["channel"])
        if not repo.lock_customer(conn, data.store_id, data.customer_id):
            raise InvalidToken("no such customer")
        latest = repo.latest_consent_rows(conn, data.store_id, data.customer_id)
        status, _ = latest.get(channel, ("", 0))
        changed = status != ConsentStatus.WITHDRAWN
        if changed:
            repo.add_consents(
                conn, data.store_id, data.customer_id, [(channel, ConsentStatus.WITHDRAWN)],
                source=UNSUBSCRIBE_SOURCE, now=_after(latest, now),
            )  # fmt: skip
        if not repo.has_event(conn, data.outbox_id, "unsubscribe"):
            how = "one-click" if one_click else "page"
            repo.add_event(
                conn, data.store_id, data.outbox_id, data.customer_id, "unsubscribe", now, how
            )
        name = repo.store_name(conn, data.store_id) or ""
    return Unsubscribed(name, channel, changed, _preferences_token(engine, data))


@dataclass(frozen=True)
class Preferences:
    store_name: str
    address: str  # masked email
    channels: dict[str, bool]  # channel -> subscribed (latest consent is granted)
    changed: tuple[str, ...] = ()


def _after(latest: dict[str, tuple[str, int]], now: int) -> int:
    """When a consent change is recorded: now, or just after the customer's latest consent
    row when that one is dated later (clock skew, an import with future dates), so the
    change is always the latest and a repeated request finds it."""
    newest = max((at for _, at in latest.values()), default=0)
    return max(now, newest + 1)


def _state(latest: dict[str, str]) -> dict[str, bool]:
    return {c: latest.get(c) == ConsentStatus.GRANTED for c in PREFERENCE_CHANNELS}


def preferences(engine: Engine, token: str, *, store: str | None = None) -> Preferences:
    """The customer's per-channel subscriptions, for the preference centre."""
    data = _open(engine, token, Purpose.PREFERENCES, store)
    with engine.connect() as conn:
        _message(conn, data)
        latest = repo.latest_consents(conn, data.store_id, data.customer_id)
        contact = repo.customer_contact(conn, data.store_id, data.customer_id)
        name = repo.store_name(conn, data.store_id) or ""
    return Preferences(name, _address(contact, "email"), _state(latest))


def set_preferences(
    engine: Engine, token: str, choices: dict[str, bool], *, store: str | None = None
) -> Preferences:
    """Opt in or out per channel; a consent row is written only for a channel that changes."""
    unknown = sorted(set(choices) - set(PREFERENCE_CHANNELS))
    if unknown:
        raise InputError(
            f"unknown channel(s): {', '.join(unknown)}",
            hint=f"choose among {', '.join(PREFERENCE_CHANNELS)}",
        )
    data = _open(engine, token, Purpose.PREFERENCES, store)
    now = now_micros()
    with write_transaction(engine) as conn:
        _message(conn, data)
        if not repo.lock_customer(conn, data.store_id, data.customer_id):
            raise InvalidToken("no such customer")
        latest = repo.latest_consent_rows(conn, data.store_id, data.customer_id)
        state = _state({c: status for c, (status, _) in latest.items()})
        changes = [
            (c, ConsentStatus.GRANTED if want else ConsentStatus.WITHDRAWN)
            for c, want in choices.items()
            if state[c] != want
        ]
        repo.add_consents(
            conn, data.store_id, data.customer_id, changes, source=PREFERENCE_SOURCE,
            now=_after(latest, now),
        )  # fmt: skip
        for channel, status in changes:
            state[channel] = status == ConsentStatus.GRANTED
        contact = repo.customer_contact(conn, data.store_id, data.customer_id)
        name = repo.store_name(conn, data.store_id) or ""
    return Preferences(name, _address(contact, "email"), state, tuple(c for c, _ in changes))


# -- tracking -----------------------------------------------------------------------------------


def record_open(engine: Engine, token: str, *, store: str | None = None) -> None:
    """Record an open of the message (each hit of the pixel is one)."""
    data = _open(engine, token, Purpose.OPEN, store)
    with write_transaction(engine) as conn:
        _message(conn, data)
        repo.add_event(conn, data.store_id, data.outbox_id, data.customer_id, "open", now_micros())


def click(engine: Engine, token: str, *, store: str | None = None) -> str:
    """Record a click and return its target: the URL signed into the token, nothing else."""
    data = _open(engine, token, Purpose.CLICK, store)
    target = data.url or ""
    try:
        tokens.check_target(target)
    except ValueError:
        raise InvalidToken("bad target") from None
    with write_transaction(engine) as conn:
        _message(conn, data)
        repo.add_event(
            conn, data.store_id, data.outbox_id, data.customer_id, "click", now_micros(), target
        )
    return target
