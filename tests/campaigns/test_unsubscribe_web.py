"""The link web app (`boomerang.api.app`) on SQLite and PostgreSQL, through FastAPI's
TestClient: RFC 8058 one-click unsubscribe, the confirmation page, the preference centre,
the open pixel and tracked clicks, all behind signed tokens.

Each engine's database is created and migrated once per module (CREATE DATABASE and the
migrations dominate otherwise); each test builds its own two stores in it, "shopN" with
Jane (email consent granted) and one sent email (an outbox row), and "otherN" with its own
customer and message, and looks only at their rows.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, insert, text
from tests.conftest import pg_admin_url
from tests.support import rows

from boomerang.api.app import PIXEL, create_app
from boomerang.campaigns import tokens
from boomerang.campaigns.tokens import InvalidToken, Purpose, Signer
from boomerang.errors import ConfigError
from boomerang.services import campaign_web as service
from boomerang.services.context import open_engine
from boomerang.store.repos import campaign_web as repo
from boomerang.store.schema import consents, customers, outbox, stores

BASE = "https://links.shop.example"
T0 = 1_700_000_000_000_000  # 2023-11-14: before any request of the tests
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}  # fmt: skip


_numbers = itertools.count(1)


@dataclass
class Shop:
    db: str
    engine: Engine
    name: str
    other_name: str
    store_id: int
    customer_id: int
    outbox_id: int
    other_store_id: int
    other_customer_id: int
    other_outbox_id: int


def _add_store(engine: Engine, name: str, email: str) -> tuple[int, int, int]:
    with engine.begin() as conn:
        store_id = conn.execute(
            insert(stores).values(name=name, currency="USD", timezone="UTC", created_at=T0)
            .returning(stores.c.id)
        ).scalar_one()  # fmt: skip
        customer_id = conn.execute(
            insert(customers).values(
                store_id=store_id, external_id=email, email=email, phone="+15550001234",
                first_name="Jane", account_status="registered",
            ).returning(customers.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(
            insert(consents).values(
                store_id=store_id, customer_id=customer_id, channel="email", status="granted",
                source="checkout", occurred_at=T0,
            )
        )  # fmt: skip
        outbox_id = conn.execute(
            insert(outbox).values(
                store_id=store_id, message_key=f"{name}:run:1:step:welcome", customer_id=customer_id,
                channel="email", template="welcome", transactional=0, priority=50, holdout=0,
                status="sent", not_before=T0, attempts=1, context="{}", created_at=T0,
                updated_at=T0, sent_at=T0,
            ).returning(outbox.c.id)
        ).scalar_one()  # fmt: skip
    return int(store_id), int(customer_id), int(outbox_id)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Engine]]:
    """One migrated database per engine for the module (see `tests/conftest.py` for the
    PostgreSQL rules: skipped without BOOMERANG_TEST_PG_URL, except under CI)."""
    if request.param == "sqlite":
        url = str(tmp_path_factory.mktemp("web") / "store.db")
        engine = open_engine(url)
        yield url, engine
        engine.dispose()
        return
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("BOOMERANG_TEST_PG_URL not set")
    name = f"bt_{secrets.token_hex(5)}"
    admin_engine = create_engine(
        admin.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.rsplit("/", 1)[0] + "/" + name
    engine = open_engine(url)
    try:
        yield url, engine
    finally:
        engine.dispose()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


@pytest.fixture(scope="module")
def module_client(database: tuple[str, Engine]) -> Iterator[TestClient]:
    with TestClient(create_app(database[0]), follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def shop(database: tuple[str, Engine]) -> Shop:
    url, engine = database
    n = next(_numbers)
    ids = _add_store(engine, f"shop{n}", "jane@example.com")
    other = _add_store(engine, f"other{n}", "omar@example.com")
    return Shop(url, engine, f"shop{n}", f"other{n}", *ids, *other)


@pytest.fixture
def client(module_client: TestClient) -> TestClient:
    module_client.cookies.clear()
    return module_client


def q(shop: Shop, sql: str) -> list[tuple[object, ...]]:
    with shop.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def links(shop: Shop, which: str = "shop") -> service.Links:
    if which == "shop":
        return service.links_for(shop.engine, shop.name, shop.outbox_id, shop.customer_id, BASE)
    return service.links_for(
        shop.engine, shop.other_name, shop.other_outbox_id, shop.other_customer_id, BASE
    )


def path(url: str) -> str:
    assert url.startswith(BASE)
    return url[len(BASE) :]


def consent_rows(shop: Shop) -> list[tuple[object, ...]]:
    return q(
        shop,
        f"SELECT channel, status, source FROM consents WHERE customer_id = {shop.customer_id} "
        "ORDER BY occurred_at, id",
    )


def event_rows(shop: Shop, kind: str) -> list[tuple[object, ...]]:
    return q(
        shop,
        "SELECT outbox_id, customer_id, url FROM message_events "
        f"WHERE type = '{kind}' AND store_id IN ({shop.store_id}, {shop.other_store_id}) "
        "ORDER BY id",
    )


def tamper(token: str) -> str:
    """Flip one bit in the middle of the token (payload or MAC)."""
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


# -- unsubscribe --------------------------------------------------------------------------------


def test_get_shows_a_confirmation_page_and_never_unsubscribes(
    shop: Shop, client: TestClient
) -> None:
    url = path(links(shop).unsubscribe)
    for _ in range(3):
        page = client.get(url)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<form method="post">' in page.text
        assert "j•••@example.com" in page.text and "jane@example.com" not in page.text
        assert "set-cookie" not in page.headers
        assert page.headers["referrer-policy"] == "no-referrer"
    assert consent_rows(shop) == [("email", "granted", "checkout")]
    assert event_rows(shop, "unsubscribe") == []


def test_one_click_post_unsubscribes_exactly_once(shop: Shop, client: TestClient) -> None:
    headers = links(shop).headers()
    assert headers == {
        "List-Unsubscribe": f"<{links(shop).one_click}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    url = path(links(shop).one_click)
    for _ in range(3):
        response = client.post(url, **ONE_CLICK)  # type: ignore[arg-type]
        assert response.status_code == 200
        assert "location" not in response.headers
        assert "set-cookie" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
        assert "You are unsubscribed" in response.text
    assert consent_rows(shop) == [
        ("email", "granted", "checkout"),
        ("email", "withdrawn", "unsubscribe link"),
    ]
    assert event_rows(shop, "unsubscribe") == [(shop.outbox_id, shop.customer_id, "one-click")]
    assert "You are unsubscribed" in client.get(url).text  # the page now says so
    assert not client.cookies


def test_the_page_button_and_multipart_one_click_also_unsubscribe(
    shop: Shop, client: TestClient
) -> None:
    url = path(links(shop).unsubscribe)
    assert client.post(url, data={"confirm": "1"}).status_code == 200
    assert event_rows(shop, "unsubscribe") == [(shop.outbox_id, shop.customer_id, "page")]
    other = path(links(shop, "other").unsubscribe)
    response = client.post(other, files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    assert q(
        shop,
        f"SELECT status, source FROM consents WHERE customer_id = {shop.other_customer_id} "
        "ORDER BY id",
    ) == [("granted", "checkout"), ("withdrawn", "unsubscribe link")]
    assert event_rows(shop, "unsubscribe")[-1] == (
        shop.other_outbox_id, shop.other_customer_id, "one-click",
    )  # fmt: skip


def test_a_consent_dated_in_the_future_is_still_overridden(shop: Shop, client: TestClient) -> None:
    future = T0 * 2  # e.g. an import with a wrong clock
    with shop.engine.begin() as conn:
        conn.execute(
            insert(consents).values(
                store_id=shop.store_id, customer_id=shop.customer_id, channel="email",
                status="granted", source="import", occurred_at=future,
            )
        )  # fmt: skip
    for _ in range(2):
        client.post(path(links(shop).one_click), **ONE_CLICK)  # type: ignore[arg-type]
    assert consent_rows(shop)[-1] == ("email", "withdrawn", "unsubscribe link")
    assert len(consent_rows(shop)) == 3
    assert q(shop, "SELECT max(occurred_at) FROM consents WHERE source = 'unsubscribe link'") == [
        (future + 1,)
    ]


def test_concurrent_unsubscribes_write_one_consent_row(shop: Shop) -> None:
    token = links(shop).one_click.rsplit("/", 1)[1]
    engines = [open_engine(shop.db, upgrade=False) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results: list[bool] = []

    def worker(engine: Engine) -> None:
        barrier.wait()
        results.append(service.unsubscribe(engine, token, one_click=True).changed)

    threads = [threading.Thread(target=worker, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert sorted(results) == [False, False, False, True]
    assert consent_rows(shop).count(("email", "withdrawn", "unsubscribe link")) == 1
    assert len(event_rows(shop, "unsubscribe")) == 1


def test_bad_tokens_are_404_everywhere(shop: Shop, client: TestClient) -> None:
    mine = links(shop)
    tokens_by_route = {
        "/u/{}": mine.unsubscribe.rsplit("/", 1)[1],
        "/p/{}": mine.preferences.rsplit("/", 1)[1],
        "/o/{}.gif": mine.pixel.rsplit("/", 1)[1].removesuffix(".gif"),
        "/c/{}": mine.track_click("https://shop.example/").rsplit("/", 1)[1],
    }
    foreign = Signer(shop.store_id, tokens.new_key())  # same store id, another database's key
    for route, token in tokens_by_route.items():
        bad = [
            tamper(token),
            token[:-3],
            token + "AA",
            "x",
            "%00",
            foreign.sign(Purpose.UNSUBSCRIBE, shop.outbox_id, shop.customer_id),
        ]
        for candidate in bad:
            for method in ("get", "post") if route[1] in "up" else ("get",):
                response = getattr(client, method)(route.format(candidate))
                assert response.status_code == 404, (route, candidate, method)
                assert "set-cookie" not in response.headers
    # A token made for one page does not open another.
    assert client.get(f"/p/{tokens_by_route['/u/{}']}").status_code == 404
    assert client.post(f"/u/{tokens_by_route['/p/{}']}", **ONE_CLICK).status_code == 404  # type: ignore[arg-type]
    # A genuine signature over a message that is not this customer's.
    signer = service.signer(shop.engine, shop.name)
    crossed = signer.sign(Purpose.UNSUBSCRIBE, shop.other_outbox_id, shop.customer_id)
    assert client.post(f"/u/{crossed}", **ONE_CLICK).status_code == 404  # type: ignore[arg-type]
    assert consent_rows(shop) == [("email", "granted", "checkout")]
    assert q(
        shop,
        "SELECT count(*) FROM message_events "
        f"WHERE store_id IN ({shop.store_id}, {shop.other_store_id})",
    ) == [(0,)]


def test_a_server_for_one_store_refuses_another_stores_tokens(shop: Shop) -> None:
    theirs = links(shop, "other")
    with TestClient(create_app(shop.db, shop.name), follow_redirects=False) as only_shop:
        assert only_shop.post(path(theirs.one_click), **ONE_CLICK).status_code == 404  # type: ignore[arg-type]
        assert only_shop.get(path(theirs.preferences)).status_code == 404
        assert only_shop.get(path(theirs.pixel)).status_code == 404
        assert only_shop.get(path(theirs.track_click("https://x.example/"))).status_code == 404
        assert only_shop.post(path(links(shop).one_click), **ONE_CLICK).status_code == 200  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        service.unsubscribe(shop.engine, theirs.one_click.rsplit("/", 1)[1], one_click=True,
                            store=shop.name)  # fmt: skip


def test_tokens_reveal_no_address_and_keys_live_in_campaign_settings(shop: Shop) -> None:
    mine, theirs = links(shop), links(shop, "other")
    for url in (mine.unsubscribe, mine.preferences, mine.pixel):
        token = url.rsplit("/", 1)[1].removesuffix(".gif")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert b"jane" not in raw and b"example.com" not in raw
        assert len(token) < 40
    with shop.engine.begin() as conn:
        repo.merge_config(conn, shop.store_id, {"caps": {"email": "24h"}}, T0)
        config = repo.load_config(conn, shop.store_id)
    assert config["caps"] == {"email": "24h"}  # other settings kept next to the key
    assert len(tokens.decode_key(config["signing_key"])) == 32
    assert config["signing_key"] not in repr(service.signer(shop.engine, shop.name))
    with shop.engine.connect() as conn:
        other_key = repo.signing_key(conn, shop.other_store_id)
    assert other_key is not None and other_key != config["signing_key"]  # one key per store
    assert theirs.unsubscribe != mine.unsubscribe


def test_links_need_a_base_url(shop: Shop) -> None:
    with pytest.raises(ConfigError, match="base URL"):
        service.links_for(shop.engine, shop.name, shop.outbox_id, shop.customer_id)
    with shop.engine.begin() as conn:
        repo.merge_config(conn, shop.store_id, {"base_url": "https://l.example/track/"}, T0)
    found = service.links_for(shop.engine, shop.name, shop.outbox_id, shop.customer_id)
    assert found.unsubscribe.startswith("https://l.example/track/u/")
    assert found.pixel.endswith(".gif")
    with pytest.raises(ConfigError, match="not usable"):
        service.links_for(shop.engine, shop.name, 1, 1, "ftp://x")


# -- preference centre --------------------------------------------------------------------------


def test_preference_centre_round_trip(shop: Shop, client: TestClient) -> None:
    url = path(links(shop).preferences)
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="email" value="on" checked' in page.text
    assert 'name="sms" value="on">' in page.text
    saved = client.post(url, data={"sms": "on", "push": "on"})
    assert saved.status_code == 200 and "Saved." in saved.text
    assert 'name="email" value="on">' in saved.text
    assert 'name="sms" value="on" checked' in saved.text
    assert consent_rows(shop) == [
        ("email", "granted", "checkout"),
        ("email", "withdrawn", "preference centre"),
        ("sms", "granted", "preference centre"),
        ("push", "granted", "preference centre"),
    ]
    client.post(url, data={"sms": "on", "push": "on"})  # the same choices again: no rows
    assert len(consent_rows(shop)) == 4
    again = service.preferences(shop.engine, url.rsplit("/", 1)[1])
    assert again.channels == {"email": False, "sms": True, "push": True}
    client.post(url, data={"email": "on", "sms": "on", "push": "on"})
    assert consent_rows(shop)[-1] == ("email", "granted", "preference centre")
    # A multipart post is refused rather than read as "nothing checked".
    before = consent_rows(shop)
    assert client.post(url, files={"email": (None, "on")}).status_code == 400
    assert consent_rows(shop) == before
    # The unsubscribe page links to the same customer's preference centre.
    unsub = client.get(path(links(shop).unsubscribe)).text
    assert "/p/" in unsub


def test_pages_escape_what_they_show(shop: Shop, client: TestClient) -> None:
    url = path(links(shop).unsubscribe)
    with shop.engine.begin() as conn:
        conn.execute(
            stores.update().where(stores.c.id == shop.store_id).values(name="<script>x</script>")
        )
    page = client.get(url).text
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


# -- pixel and clicks ---------------------------------------------------------------------------


def test_open_pixel_returns_a_gif_and_records_opens(shop: Shop, client: TestClient) -> None:
    url = path(links(shop).pixel)
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content == PIXEL and PIXEL.startswith(b"GIF89a")
        assert "no-store" in response.headers["cache-control"]
        assert "set-cookie" not in response.headers
    assert event_rows(shop, "open") == [(shop.outbox_id, shop.customer_id, None)] * 2


def test_clicks_redirect_only_to_the_signed_url(shop: Shop, client: TestClient) -> None:
    mine = links(shop)
    target = "https://shop.example/p/beans?utm_source=boomerang&x=1#top"
    tracked = mine.track_click(target)
    assert tracked.startswith(f"{BASE}/c/")
    response = client.get(path(tracked))
    assert response.status_code == 302
    assert response.headers["location"] == target
    assert "no-store" in response.headers["cache-control"]
    # Query strings of the request never steer the redirect.
    steered = client.get(path(tracked) + "?url=https://evil.example/&next=https://evil.example/")
    assert steered.headers["location"] == target
    assert client.get("/c/" + tamper(tracked.rsplit("/", 1)[1])).status_code == 404
    assert event_rows(shop, "click") == [(shop.outbox_id, shop.customer_id, target)] * 2
    # Only absolute http(s) links are wrapped; ours are left alone.
    for untouched in ("mailto:jane@example.com", "javascript:alert(1)", "#top", "/relative",
                      "{{ unsubscribe_url }}", mine.unsubscribe):  # fmt: skip
        assert mine.track_click(untouched) == untouched
    signer = service.signer(shop.engine, shop.name)
    with pytest.raises(ValueError):
        signer.sign(Purpose.CLICK, shop.outbox_id, shop.customer_id, "javascript:alert(1)")


# -- `boomerang serve` --------------------------------------------------------------------------


def test_serve_runs_the_app_with_uvicorn(tmp_path: Path) -> None:
    db = str(tmp_path / "serve.db")
    engine = open_engine(db)
    try:
        _, customer_id, outbox_id = _add_store(engine, "shop", "jane@example.com")
        one_click = service.links_for(engine, "shop", outbox_id, customer_id, BASE).one_click
    finally:
        engine.dispose()
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = (
        "from boomerang.cli.serve import serve; "
        f"serve(db={db!r}, store='shop', host='127.0.0.1', port={port})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/healthz").text == "ok":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "boomerang serve did not start"
            time.sleep(0.1)
        response = httpx.post(base + path(one_click), **ONE_CLICK)  # type: ignore[arg-type]
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
    finally:
        proc.terminate()
        proc.wait(10)
    assert rows(db, "SELECT status, source FROM consents ORDER BY id") == [
        ("granted", "checkout"),
        ("withdrawn", "unsubscribe link"),
    ]
