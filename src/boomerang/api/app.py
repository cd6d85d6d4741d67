"""The small web app behind the links in a message (served by ``boomerang serve``).

    GET  /u/{token}       confirmation page; never unsubscribes by itself (link scanners
                          and prefetchers follow GETs)
    POST /u/{token}       unsubscribe: RFC 8058 one-click (body ``List-Unsubscribe=One-Click``,
                          sent by mail clients) or the page's button; 200 with a short page,
                          no redirect, no cookie, no authentication beyond the token
    GET  /p/{token}       preference centre: email, sms, push checkboxes
    POST /p/{token}       save them (one consent row per channel that changes)
    GET  /o/{token}.gif   1x1 transparent GIF, not cacheable; records an open
    GET  /c/{token}       302 to the URL signed into the token; records a click
    GET  /healthz         ``ok``

An invalid, tampered or foreign token answers 404 on every route. Pages are server-rendered
(Jinja2, autoescaped), send ``Referrer-Policy: no-referrer`` (tokens stay out of Referer
headers), ``Cache-Control: no-store`` and a restrictive Content-Security-Policy, and set
no cookies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from boomerang.config import load_settings
from boomerang.errors import BoomerangError, InputError, NotFoundError
from boomerang.services import campaign_web as service
from boomerang.services.context import open_engine

MAX_FORM_BYTES = 16_384
# The smallest transparent GIF (1x1, one transparent colour).
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
CHANNEL_LABELS = {"email": "emails", "sms": "text messages", "push": "notifications"}
PREFERENCE_LABELS = (
    ("email", "Email"),
    ("sms", "Text messages (SMS)"),
    ("push", "Push notifications"),
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
SECURITY = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

_env = Environment(
    loader=PackageLoader("boomerang.api", "templates"),
    autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=NO_CACHE)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


async def _form(request: Request) -> dict[str, list[str]]:
    """A small urlencoded form (multipart bodies are matched as text: see `_one_click`)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise InputError("form too large", hint="send at most 16 kB")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InputError("form too large", hint="send at most 16 kB")
    text = body.decode("utf-8", "replace")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return {"_multipart": [text]}
    return parse_qs(text, keep_blank_values=True)


def _one_click(form: dict[str, list[str]]) -> bool:
    """RFC 8058's ``List-Unsubscribe=One-Click``, urlencoded or as a multipart field."""
    if "One-Click" in form.get("List-Unsubscribe", []):
        return True
    raw = form.get("_multipart", [""])[0]
    return 'name="List-Unsubscribe"' in raw and "One-Click" in raw


def create_app(db: str, store: str | None = None) -> FastAPI:
    """The app on database ``db``. With ``store``, only that store's tokens are accepted
    (any other store's answer 404); without, every store in the database is served."""
    engine = open_engine(db)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="Boomerang links",
        summary="Unsubscribe, preference centre, open pixel and click tracking.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.store = store

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(BoomerangError)
    async def boomerang_error(_: Request, exc: BoomerangError) -> Response:
        if isinstance(exc, NotFoundError):
            return _page(
                "error.html.j2",
                404,
                title="Link not found",
                message="This link is not valid. Open it from the message again; it may "
                "have been cut short.",
            )
        if isinstance(exc, InputError):
            return _page("error.html.j2", 400, title="Bad request", message=exc.one_line())
        return _page(
            "error.html.j2", 500, title="Something went wrong", message="Please try again later."
        )

    @app.get("/healthz", response_class=PlainTextResponse, include_in_schema=False)
    def healthz() -> str:
        return "ok"

    @app.get("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe confirmation page")
    def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
        page = service.unsubscribe_page(engine, token, store=store)
        return _page(
            "unsubscribe.html.j2",
            page=page,
            store_name=page.store_name,
            channel_label=CHANNEL_LABELS.get(page.channel, "messages"),
            preferences_url=f"{_root(request)}/p/{page.preferences_token}",
        )

    @app.post("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe (RFC 8058)")
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        form = await _form(request)
        result = await run_in_threadpool(
            service.unsubscribe, engine, token, one_click=_one_click(form), store=store
        )
        return _page(
            "unsubscribed.html.j2",
            result=result,
            store_name=result.store_name,
            channel_label=CHANNEL_LABELS.get(result.channel, "messages"),
            preferences_url=f"{_root(request)}/p/{result.preferences_token}",
        )

    @app.get("/p/{token}", response_class=HTMLResponse, summary="Preference centre")
    def preferences(token: str) -> HTMLResponse:
        prefs = service.preferences(engine, token, store=store)
        return _page(
            "preferences.html.j2",
            prefs=prefs,
            store_name=prefs.store_name,
            channels=PREFERENCE_LABELS,
            saved=False,
        )

    @app.post("/p/{token}", response_class=HTMLResponse, summary="Save preferences")
    async def save_preferences(token: str, request: Request) -> HTMLResponse:
        form = await _form(request)
        if "_multipart" in form:
            raise InputError(
                "the preference form is read urlencoded",
                hint="post application/x-www-form-urlencoded, as the page's form does",
            )
        choices = {channel: channel in form for channel, _ in PREFERENCE_LABELS}
        prefs = await run_in_threadpool(
            service.set_preferences, engine, token, choices, store=store
        )
        return _page(
            "preferences.html.j2",
            prefs=prefs,
            store_name=prefs.store_name,
            channels=PREFERENCE_LABELS,
            saved=True,
        )

    @app.get("/o/{token}.gif", summary="Open pixel")
    def pixel(token: str) -> Response:
        service.record_open(engine, token, store=store)
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    @app.get("/c/{token}", summary="Tracked click")
    def click(token: str) -> RedirectResponse:
        target = service.click(engine, token, store=store)
        return RedirectResponse(target, status_code=302, headers=NO_CACHE)

    return app


def app_from_env() -> FastAPI:
    """`create_app` for ``BOOMERANG_DB`` / ``BOOMERANG_STORE`` (what `boomerang serve` sets;
    usable as ``uvicorn --factory boomerang.api.app:app_from_env``)."""
    settings = load_settings()
    return create_app(settings.db, settings.store)
