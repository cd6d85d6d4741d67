"""Message templates: files, a Jinja2 sandbox, CSS inlined once per template, the plain-text
part, SMS length, and validation of a flow's templates (docs/templates.md).

Files. A template ``NAME`` is a set of files ``NAME.<part>.j2`` in the store's templates
directory, else among the built-ins packaged next to this module:

    NAME.subject.j2   email subject (one line)            email: required; push: the title
    NAME.html.j2      email HTML body (a fragment: the layout wraps it)   email: required
    NAME.txt.j2       email plain-text part (optional: else derived from the HTML)
    NAME.sms.j2       SMS text                             sms: required
    NAME.push.j2      push notification body               push: required
    NAME.json.j2      webhook payload (must render to JSON) webhook: required

``base.html.j2`` / ``base.txt.j2`` are the layouts: the HTML (text) fragment is put into the
layout's ``{% block content %}``; a ``{% block preheader %}...{% endblock %}`` in the fragment
fills the layout's preheader. A first line ``{# layout: NAME #}`` picks another layout
(``NAME.html.j2``) or none (``{# layout: none #}``: the file is a whole document). Files whose
name starts with ``_`` are partials for ``{% include "_name.html.j2" %}``.

Speed. Each template is assembled (layout + fragment + literal includes) and compiled once,
and its CSS is inlined once, at load: every Jinja construct is swapped for a placeholder the
HTML parser leaves alone (an HTML comment between elements, an opaque token inside a tag,
an attribute or a comment), css-inline runs, and the constructs are put back. Inlining the
raw source instead is wrong: the parser moves ``{% for %}`` out of a ``<table>`` and turns
``&`` inside an expression into ``&amp;``. The first render of each template (and every
validation) compares the result with "render, then inline"; a template where they differ (an
element opened in one branch of an ``{% if %}`` and closed in another, a ``{% for %}`` between
``<table>`` and ``<tr>`` without an explicit ``<tbody>``, CSS built by Jinja in ``<style>``) is
inlined per message from then on. The plain-text part is derived from the HTML template once
(html2text at load, placeholders kept), not per message: html2text costs ~8 ms a message.

Sandbox. Templates run in Jinja2's `ImmutableSandboxedEnvironment`: no ``_``-attributes
(``{{ ''.__class__ }}`` is a `SecurityError`), no mutating lists or dicts, ranges capped.
Unknown variables are errors (`StrictUndefined`), named with the file and line. Keys of the
context's dicts win over dict methods (``last_order.items`` is the order's items).
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
import html2text
from jinja2 import FileSystemLoader, Template, meta, nodes, pass_context
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError
from jinja2.runtime import Context, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from boomerang.campaigns.flow import Flow, GrantCredit, IssueCoupon, Send, Step
from boomerang.domain.clock import MICROS_PER_SECOND, from_micros, to_micros
from boomerang.domain.money import currency_exponent
from boomerang.errors import InputError

__all__ = [
    "BUILTIN_DIR",
    "CHANNEL_PARTS",
    "Links",
    "Rendered",
    "TemplateError",
    "TemplateSet",
    "carried_before",
    "coupon_description",
    "coupons_before",
    "format_date",
    "format_money",
    "sample_context",
    "sample_run_context",
    "sms_segments",
    "validate_flow",
]

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent / "templates"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
#: Per channel: (required parts, optional parts). Part = the file's middle suffix.
CHANNEL_PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "email": (("subject", "html"), ("txt",)),
    "sms": (("sms",), ()),
    "push": (("push",), ("subject",)),
    "webhook": (("json",), ()),
}
DEFAULT_LAYOUT = "base"
HTML_ONLY = re.compile(r"<!--html-only-->.*?<!--/html-only-->", re.S)


class TemplateError(InputError):
    """A template that is missing, does not parse, names an unknown variable, does
    something the sandbox forbids, or fails while rendering (code "input")."""


@dataclass(frozen=True)
class Links:
    """The per-message links a template may show (``links.unsubscribe`` ...) and the
    click-tracking rewrite the ``track`` filter applies (identity when None)."""

    unsubscribe: str = ""
    preferences: str = ""
    open_pixel: str = ""
    view_online: str = ""
    track: Callable[[str], str] | None = None

    def urls(self) -> dict[str, str]:
        return {
            "unsubscribe": self.unsubscribe,
            "preferences": self.preferences,
            "open_pixel": self.open_pixel,
            "view_online": self.view_online,
        }


@dataclass(frozen=True)
class Rendered:
    """One rendered message. Email: subject, html, text. SMS: sms (and ``segments``).
    Push: subject (the title) and text (the body). Webhook: text (the JSON payload)."""

    subject: str = ""
    html: str = ""
    text: str = ""
    sms: str = ""
    segments: int = 0
    warnings: tuple[str, ...] = ()


# -- filters ---------------------------------------------------------------------------------

_SYMBOLS = {
    "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩",
    "CAD": "CA$", "AUD": "A$", "NZD": "NZ$", "BRL": "R$", "MXN": "MX$", "CNY": "CN¥",
}  # fmt: skip


def format_money(minor: int | None, currency: str) -> str:
    """``1250, "USD"`` -> ``$12.50`` (the currency's exponent; thousands separated); a
    currency without a symbol here: ``12.50 CHF``; None -> ``""``."""
    if minor is None:
        return ""
    exponent = currency_exponent(currency)
    amount = Decimal(int(minor)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))
    sign = "-" if amount < 0 else ""
    text = f"{abs(amount):,f}"
    symbol = _SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    found = _ZONES.get(name)
    if found is None:
        try:
            found = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return None
        _ZONES[name] = found
    return found


DATE_FORMATS = {"long": "long", "short": "short", "iso": "%Y-%m-%d", "datetime": "datetime"}


def format_date(value: Any, fmt: str | None = None, tz: str | None = None) -> str:
    """A moment (aware datetime, epoch micros, ISO text) or a date, shown in ``tz``:
    ``long`` (default) "December 9, 2026", ``short`` "Dec 9, 2026", ``iso`` "2026-12-09",
    ``datetime`` "December 9, 2026, 14:05", or any strftime format. None -> ``""``."""
    if value is None or value == "":
        return ""
    moment: datetime | date
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = value
    elif isinstance(value, int) and not isinstance(value, bool):
        moment = from_micros(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"date: cannot read {value!r} as a date") from None
        moment = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    else:
        raise ValueError(f"date: cannot format a {type(value).__name__}")
    if isinstance(moment, datetime):
        zone = _zone(tz)
        moment = moment.astimezone(zone or UTC)
    kind = fmt or "long"
    if kind == "long":
        return f"{moment:%B} {moment.day}, {moment.year}"
    if kind == "short":
        return f"{moment:%b} {moment.day}, {moment.year}"
    if kind == "datetime":
        return f"{moment:%B} {moment.day}, {moment.year}, {moment:%H:%M}"
    return moment.strftime(DATE_FORMATS.get(kind, kind))


def coupon_description(kind: str, value: int, currency: str) -> str:
    """``$10.00 off``, ``15% off``, ``free shipping``."""
    if kind == "amount_off":
        return f"{format_money(value, currency)} off"
    if kind == "percent_off":
        percent = (Decimal(value) / 100).normalize()
        return f"{percent:f}% off"
    if kind == "free_shipping":
        return "free shipping"
    return kind.replace("_", " ")


def _section(ctx: Context, name: str) -> Mapping[str, Any]:
    found = ctx.get(name)
    return found if isinstance(found, Mapping) else {}


@pass_context
def _money_filter(ctx: Context, value: int | None, currency: str | None = None) -> str:
    return format_money(value, currency or str(_section(ctx, "store").get("currency") or "USD"))


@pass_context
def _date_filter(ctx: Context, value: Any, fmt: str | None = None, tz: str | None = None) -> str:
    zone = (
        tz
        or _section(ctx, "customer").get("timezone")
        or _section(ctx, "store").get("timezone")
        or "UTC"
    )
    return format_date(value, fmt, str(zone))


@pass_context
def _track_filter(ctx: Context, url: Any) -> str:
    text = "" if url is None else str(url)
    tracker = ctx.get("_track")
    if tracker is None or not text.startswith(("http://", "https://")):
        return text
    return str(tracker(text))


FILTERS: dict[str, Callable[..., Any]] = {
    "money": _money_filter,
    "date": _date_filter,
    "track": _track_filter,
}


# -- SMS length ------------------------------------------------------------------------------

_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # GSM-7 | UCS-2
    units: int  # GSM-7 septets (extension characters count 2) or UTF-16 code units
    segments: int
    single_limit: int  # 160 | 70
    offending: str = ""  # the first character outside GSM-7, if any


def sms_segments(text: str) -> SmsLength:
    """How an SMS is sent: GSM-7 when every character is in the GSM 03.38 alphabet (160 in
    one message, 153 per part when split), else UCS-2 (70, then 67 per part)."""
    units = 0
    for ch in text:
        if ch in _GSM7:
            units += 1
        elif ch in _GSM7_EXT:
            units += 2
        else:
            utf16 = len(text.encode("utf-16-le")) // 2
            segments = 0 if utf16 == 0 else 1 if utf16 <= 70 else math.ceil(utf16 / 67)
            return SmsLength("UCS-2", utf16, segments, 70, ch)
    segments = 0 if units == 0 else 1 if units <= 160 else math.ceil(units / 153)
    return SmsLength("GSM-7", units, segments, 160)


def _sms_warning(where: str, length: SmsLength) -> str | None:
    if length.segments <= 1:
        return None
    why = (
        f" (it contains {length.offending!r}, outside GSM-7, so it is sent as UCS-2)"
        if length.encoding == "UCS-2"
        else ""
    )
    return (
        f"{where}: {length.units} {length.encoding} characters are {length.segments} SMS "
        f"segments; {length.single_limit} fit in one{why}"
    )


# -- the environment -------------------------------------------------------------------------


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = ", ".join(sorted(str(k) for k in obj)) or "none"
        return f"it has: {keys}"
    if obj is None:
        return "it is empty (None): guard it with {% if ... %}"
    return f"it is a {type(obj).__name__}"


class _Strict(StrictUndefined):
    """StrictUndefined whose message says which name is missing and what was there."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        if self._undefined_obj is missing:
            return f"{name!r} is undefined"
        return f"{name!r} is undefined here ({_describe(self._undefined_obj)})"


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, where a dict's keys win over its methods (``order.items``)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _environment(search: list[str], *, html: bool) -> _Env:
    env = _Env(
        loader=FileSystemLoader(search),
        autoescape=html,
        undefined=_Strict,
        trim_blocks=not html,
        lstrip_blocks=not html,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    return env


# -- assembling a template's source ----------------------------------------------------------

_LAYOUT = re.compile(r"\A\s*\{#\s*layout:\s*([A-Za-z0-9_-]+)\s*#\}")
_BLOCK = re.compile(r"\{%-?\s*block\s+(\w+)\s*-?%\}(.*?)\{%-?\s*endblock(?:\s+\w+)?\s*-?%\}", re.S)
_INCLUDE = re.compile(r"\{%-?\s*include\s+[\"']([A-Za-z0-9_.-]+)[\"']\s*-?%\}")
_DYNAMIC = re.compile(r"\{%-?\s*(?:extends|import|from|include)\b")
_EXTENDS = re.compile(r"\{%-?\s*extends\b")


@dataclass(frozen=True)
class _Piece:
    text: str
    file: str
    line: int


@dataclass
class _Source:
    """An assembled source and, per line, the file and line it came from."""

    text: str
    origins: list[tuple[str, int]]
    files: list[str]
    dynamic: bool  # includes/imports resolved by Jinja at render (not spliced)
    extends: bool

    def where(self, line: int) -> tuple[str, int]:
        if 1 <= line <= len(self.origins):
            return self.origins[line - 1]
        return (self.files[0] if self.files else "?", line)

    def line_text(self, line: int) -> str:
        lines = self.text.split("\n")
        return lines[line - 1].strip() if 1 <= line <= len(lines) else ""


_TAGS_ONLY = re.compile(r"\{%.*?%\}|\{#.*?#\}")


def _join(pieces: list[_Piece]) -> tuple[str, list[tuple[str, int]]]:
    parts: list[str] = []
    origins: list[tuple[str, int]] = []
    for piece in pieces:
        if not piece.text:
            continue
        segs = piece.text.split("\n")
        if not origins:
            origins.append((piece.file, piece.line))
        elif _TAGS_ONLY.sub("", segs[0]).strip():  # the line's own text comes from here
            origins[-1] = (piece.file, piece.line)
        origins += [(piece.file, piece.line + j) for j in range(1, len(segs))]
        parts.append(piece.text)
    return "".join(parts), origins


def _line_at(text: str, offset: int, first: int) -> int:
    return first + text.count("\n", 0, offset)


# -- protecting Jinja from the HTML parser ---------------------------------------------------

_JINJA = re.compile(
    r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S
)
_RAW_TAGS = ("style", "script", "title", "textarea")
_TEXT, _TAG, _QUOTE, _COMMENT, _RAWTEXT = range(5)


@dataclass
class _Protected:
    text: str
    constructs: list[str]
    token: str  # the placeholder's prefix: <token><i>Y
    in_style: bool  # a construct sits inside <style> (cannot survive inlining)

    def restore(self, text: str) -> str | None:
        """Put the constructs back; None when one is missing, doubled or out of order."""
        pattern = re.compile(rf"<!--{self.token}(\d+)Y-->|{self.token}(\d+)Y")
        seen: list[int] = []

        def back(m: re.Match[str]) -> str:
            i = int(m.group(1) or m.group(2))
            seen.append(i)
            return self.constructs[i] if i < len(self.constructs) else m.group(0)

        out = pattern.sub(back, text)
        return out if seen == list(range(len(self.constructs))) else None

    def restore_loose(self, text: str) -> str:
        """Put back whatever constructs survived (html2text drops those inside tags)."""
        pattern = re.compile(rf"{self.token}(\d+)Y")
        return pattern.sub(lambda m: self.constructs[int(m.group(1))], text)


def _protect(source: str, *, comments: bool) -> _Protected:
    """Swap every Jinja construct for a placeholder: between elements an HTML comment (when
    ``comments``; a comment is never moved by the parser, even inside a table), elsewhere
    (inside a tag or attribute, a comment, <title>) an opaque alphanumeric token."""
    token = "JNJ" + secrets.token_hex(4).upper() + "X"
    while token in source:
        token = "JNJ" + secrets.token_hex(4).upper() + "X"
    out: list[str] = []
    constructs: list[str] = []
    state, quote, raw_tag, in_style = _TEXT, "", "", False
    i, n = 0, len(source)
    lower = source.lower()
    while i < n:
        ch = source[i]
        if ch == "{" and i + 1 < n and source[i + 1] in "{%#":
            m = _JINJA.match(source, i)
            if m is not None:
                k = len(constructs)
                constructs.append(m.group(0))
                if state == _TEXT and comments:
                    out.append(f"<!--{token}{k}Y-->")
                else:
                    out.append(f"{token}{k}Y")
                if state == _RAWTEXT and raw_tag == "style":
                    in_style = True
                i = m.end()
                continue
        if state == _TEXT:
            if source.startswith("<!--", i):
                state = _COMMENT
                out.append("<!--")
                i += 4
                continue
            if ch == "<" and i + 1 < n and (source[i + 1].isalpha() or source[i + 1] == "/"):
                j = i + 1 + (source[i + 1] == "/")
                k = j
                while k < n and (source[k].isalnum() or source[k] == "-"):
                    k += 1
                raw_tag = lower[j:k] if source[i + 1] != "/" else ""
                state = _TAG
        elif state == _TAG:
            if ch in "\"'":
                state, quote = _QUOTE, ch
            elif ch == ">":
                state = _RAWTEXT if raw_tag in _RAW_TAGS else _TEXT
        elif state == _QUOTE:
            if ch == quote:
                state = _TAG
        elif state == _COMMENT:
            if source.startswith("-->", i):
                out.append("-->")
                i += 3
                state = _TEXT
                continue
        elif state == _RAWTEXT and lower.startswith(f"</{raw_tag}", i):
            state, raw_tag = _TAG, ""
        out.append(ch)
        i += 1
    return _Protected("".join(out), constructs, token, in_style)


def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


_INLINER = _inliner()


def inline_css(html: str) -> str:
    """Inline a rendered document's <style> rules into style attributes (keeping @media)."""
    return _INLINER.inline(html)


def _html2text(html: str) -> str:
    h = html2text.HTML2Text()
    h.body_width = 0
    h.ignore_images = True
    h.ignore_emphasis = True
    h.ignore_tables = True  # layout tables: their cells as paragraphs
    h.unicode_snob = True
    return _tidy_text(h.handle(html))


_BLANKS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")
_TRAILING = re.compile(r"[ \t]+\n")


def _tidy_text(text: str) -> str:
    text = _TRAILING.sub("\n", text)
    return _BLANKS.sub("\n\n", text).strip() + "\n"


# -- compiled templates ----------------------------------------------------------------------


@dataclass
class _Part:
    template: Template
    source: _Source
    key: str  # the compiled template's filename (for locating errors)


@dataclass
class _Compiled:
    name: str
    channel: str
    parts: dict[str, _Part]
    html_fast: Template | None = None  # CSS inlined at load
    html_mode: str = "none"  # load | message | none
    text_derived: bool = False  # the text part was derived from the HTML at load
    variables: frozenset[str] | None = None  # None: cannot tell (dynamic includes)
    files: dict[str, int | None] = field(default_factory=dict)  # path -> mtime_ns (None: absent)
    checked: float = 0.0
    verified: bool = False
    notes: list[str] = field(default_factory=list)


class TemplateSet:
    """Templates of one store: its directory first, then the built-ins.

    ``render`` is safe to call from several threads. Templates are compiled on first use
    and kept; a changed file is picked up within ``reload_seconds`` (0: never re-check)."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        inline_at_load: bool = True,
        reload_seconds: float = 2.0,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.inline_at_load = inline_at_load
        self.reload_seconds = reload_seconds
        search = [str(p) for p in self._dirs()]
        self._html = _environment(search, html=True)
        self._text = _environment(search, html=False)
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _dirs(self) -> list[Path]:
        return ([self.directory] if self.directory is not None else []) + [BUILTIN_DIR]

    # -- files -------------------------------------------------------------------------------

    def _find(self, filename: str, looked: dict[str, int | None]) -> Path | None:
        for d in self._dirs():
            path = d / filename
            try:
                stat = path.stat()
            except OSError:
                looked[str(path)] = None
                continue
            looked[str(path)] = stat.st_mtime_ns
            return path
        return None

    def names(self) -> dict[str, list[str]]:
        """Template name -> the channels it can be sent on (store templates and built-ins)."""
        parts: dict[str, set[str]] = {}
        for d in self._dirs():
            if not d.is_dir():
                continue
            for path in d.glob("*.j2"):
                bits = path.name.split(".")
                if len(bits) == 3 and not bits[0].startswith("_") and NAME.match(bits[0]):
                    parts.setdefault(bits[0], set()).add(bits[1])
        out = {}
        for name, have in sorted(parts.items()):
            channels = [c for c, (req, _) in CHANNEL_PARTS.items() if set(req) <= have]
            if channels:
                out[name] = channels
        return out

    def has(self, name: str, channel: str) -> bool:
        if not NAME.match(name) or channel not in CHANNEL_PARTS:
            return False
        looked: dict[str, int | None] = {}
        return all(self._find(f"{name}.{p}.j2", looked) for p in CHANNEL_PARTS[channel][0])

    def _read(self, filename: str, looked: dict[str, int | None]) -> tuple[str, str]:
        path = self._find(filename, looked)
        if path is None:
            raise TemplateError(
                f"template file {filename} not found",
                hint="create it in the store's templates directory (docs/templates.md)",
            )
        return path.read_text(encoding="utf-8"), str(path)

    def _expand(
        self, piece: _Piece, looked: dict[str, int | None], depth: int, seen: tuple[str, ...]
    ) -> list[_Piece]:
        """Splice literal ``{% include "file" %}`` into the source (so its markup is inlined
        with the rest); an include of a missing file stays for Jinja to report."""
        out: list[_Piece] = []
        at = 0
        for m in _INCLUDE.finditer(piece.text):
            filename = m.group(1)
            path = self._find(filename, looked)
            if path is None or depth > 10 or filename in seen:
                continue
            out.append(
                _Piece(piece.text[at : m.start()], piece.file, _line_at(piece.text, at, piece.line))
            )
            text = path.read_text(encoding="utf-8")
            out += self._expand(_Piece(text, str(path), 1), looked, depth + 1, (*seen, filename))
            at = m.end()
        if at == 0:
            return [piece]
        out.append(_Piece(piece.text[at:], piece.file, _line_at(piece.text, at, piece.line)))
        return out

    def _assemble(
        self, name: str, part: str, looked: dict[str, int | None], *, layout_ext: str | None
    ) -> _Source:
        """The part's source: the fragment put into its layout (``layout_ext`` "html"/"txt";
        None: no layout), with literal includes spliced in."""
        text, path = self._read(f"{name}.{part}.j2", looked)
        pieces = [_Piece(text, path, 1)]
        extends = bool(_EXTENDS.search(text))
        chosen = _LAYOUT.match(text)
        layout = chosen.group(1) if chosen else DEFAULT_LAYOUT
        if layout_ext is not None and not extends and layout != "none":
            filename = f"{layout}.{layout_ext}.j2"
            if self._find(filename, looked) is not None or chosen:
                pieces = self._into_layout(text, path, filename, looked)
        expanded: list[_Piece] = []
        for p in pieces:
            expanded += self._expand(p, looked, 0, ())
        joined, origins = _join(expanded)
        dynamic = bool(_DYNAMIC.search(joined))
        return _Source(joined, origins, [path], dynamic, extends)

    def _into_layout(
        self, text: str, path: str, layout_file: str, looked: dict[str, int | None]
    ) -> list[_Piece]:
        layout, layout_path = self._read(layout_file, looked)
        # The fragment's own blocks that the layout also has (preheader, ...) fill those.
        layout_blocks = {m.group(1) for m in _BLOCK.finditer(layout)}
        given: dict[str, _Piece] = {}
        rest: list[_Piece] = []
        at = 0
        for m in _BLOCK.finditer(text):
            name, body = m.group(1), m.group(2)
            if name not in layout_blocks or name == "content" or "{% block" in body:
                continue
            rest.append(_Piece(text[at : m.start()], path, _line_at(text, at, 1)))
            given[name] = _Piece(body, path, _line_at(text, m.start(2), 1))
            at = m.end()
        rest.append(_Piece(text[at:], path, _line_at(text, at, 1)))
        out: list[_Piece] = []
        at = 0
        for m in _BLOCK.finditer(layout):
            name = m.group(1)
            if name != "content" and name not in given:
                continue
            out.append(_Piece(layout[at : m.start(2)], layout_path, _line_at(layout, at, 1)))
            out += rest if name == "content" else [given[name]]
            at = m.end(2)
        out.append(_Piece(layout[at:], layout_path, _line_at(layout, at, 1)))
        if not any(m.group(1) == "content" for m in _BLOCK.finditer(layout)):
            raise TemplateError(
                f"layout {layout_path} has no {{% block content %}}{{% endblock %}}",
                hint="the layout must say where the template's content goes",
            )
        return out

    # -- compiling ---------------------------------------------------------------------------

    def _compile(self, env: _Env, source: _Source, key: str) -> Template:
        try:
            code = env.compile(source.text, name=key, filename=key)
        except TemplateSyntaxError as exc:
            file, line = source.where(exc.lineno)
            raise TemplateError(
                f"{_short(file)} line {line}: {exc.message}",
                hint="fix the Jinja syntax (docs/templates.md)",
            ) from None
        return env.template_class.from_code(env, code, env.make_globals(None), None)

    def _load(self, name: str, channel: str) -> _Compiled:
        if not NAME.match(name):
            raise TemplateError(
                f"template name {name!r} is not valid",
                hint="letters, digits, _ and - only (a file name without its parts)",
            )
        if channel not in CHANNEL_PARTS:
            raise TemplateError(
                f"unknown channel {channel!r}", hint="one of: " + ", ".join(CHANNEL_PARTS)
            )
        required, optional = CHANNEL_PARTS[channel]
        looked: dict[str, int | None] = {}
        missing_parts = [p for p in required if self._find(f"{name}.{p}.j2", looked) is None]
        if missing_parts:
            where = f"{self.directory} or the built-ins" if self.directory else "the built-ins"
            raise TemplateError(
                f"template {name!r} has no {channel} "
                + " / ".join(f"{name}.{p}.j2" for p in missing_parts)
                + f" (looked in {where})",
                hint=f"an {channel} template needs "
                + ", ".join(f"{name}.{p}.j2" for p in required),
            )
        present = list(required) + [
            p for p in optional if self._find(f"{name}.{p}.j2", looked) is not None
        ]
        compiled = _Compiled(name, channel, {})
        for part in present:
            layout_ext = "html" if part == "html" else "txt" if part == "txt" else None
            env = self._html if part == "html" else self._text
            source = self._assemble(name, part, looked, layout_ext=layout_ext)
            key = f"{name}.{part}.j2[{channel}]"
            compiled.parts[part] = _Part(self._compile(env, source, key), source, key)
        if channel == "email":
            self._prepare_email(compiled, looked)
        compiled.variables = self._variables(compiled)
        compiled.files = looked
        compiled.checked = time.monotonic()
        return compiled

    def _prepare_email(self, compiled: _Compiled, looked: dict[str, int | None]) -> None:
        html = compiled.parts["html"]
        compiled.html_mode = "message"
        if html.source.extends or html.source.dynamic:
            compiled.notes.append("CSS inlined per message: the template extends/imports/includes")
        elif self.inline_at_load:
            protected = _protect(html.source.text, comments=True)
            restored = None if protected.in_style else protected.restore(inline_css(protected.text))
            if restored is None:
                compiled.notes.append("CSS inlined per message: the markup moved placeholders")
            else:
                try:
                    code = self._html.compile(restored, name=html.key, filename=html.key + "+css")
                except TemplateSyntaxError:
                    compiled.notes.append("CSS inlined per message: inlined source did not parse")
                else:
                    compiled.html_fast = self._html.template_class.from_code(
                        self._html, code, self._html.make_globals(None), None
                    )
                    compiled.html_mode = "load"
        if "txt" in compiled.parts:
            return
        # The plain-text part, derived once from the HTML template (with its layout).
        assembled = self._assemble(compiled.name, "html", {}, layout_ext="html")
        protected = _protect(HTML_ONLY.sub("", assembled.text), comments=False)
        derived = _tidy_text(protected.restore_loose(_html2text(protected.text)))
        source = _Source(derived, [], assembled.files, assembled.dynamic, assembled.extends)
        key = f"{compiled.name}.html.j2[text]"
        try:
            code = self._text.compile(derived, name=key, filename=key)
        except TemplateSyntaxError:
            compiled.notes.append("text part derived per message (html2text): see docs")
            return
        template = self._text.template_class.from_code(
            self._text, code, self._text.make_globals(None), None
        )
        compiled.parts["txt"] = _Part(template, source, key)
        compiled.text_derived = True

    def _variables(self, compiled: _Compiled) -> frozenset[str] | None:
        found: set[str] = set()
        for part in compiled.parts.values():
            if part.source.dynamic or part.source.extends:
                return None
            ast: nodes.Template = self._text.parse(part.source.text)
            found |= meta.find_undeclared_variables(ast)
        return frozenset(found)

    def _get(self, name: str, channel: str) -> _Compiled:
        key = (name, channel)
        compiled = self._compiled.get(key)
        if compiled is not None and self.reload_seconds > 0:
            now = time.monotonic()
            if now - compiled.checked > self.reload_seconds:
                compiled.checked = now
                if any(_mtime(p) != m for p, m in compiled.files.items()):
                    compiled = None
        if compiled is None:
            compiled = self._load(name, channel)
            self._compiled[key] = compiled
        return compiled

    # -- public ------------------------------------------------------------------------------

    def variables(self, name: str, channel: str) -> frozenset[str] | None:
        """Top-level context variables the template reads (None: cannot tell, e.g. it
        imports other templates), so a caller can skip building the rest."""
        return self._get(name, channel).variables

    def mode(self, name: str, channel: str) -> dict[str, Any]:
        """How the template is rendered: CSS inlined at load or per message, and why."""
        c = self._get(name, channel)
        return {
            "css": c.html_mode,
            "text_derived": c.text_derived,
            "verified": c.verified,
            "notes": list(c.notes),
        }

    def render(self, template: str, channel: str, context: Mapping[str, Any]) -> Rendered:
        """Render ``template`` for ``channel`` with a context from
        `services.campaign_context.build_contexts` (plus ``links``: a `Links`)."""
        compiled = self._get(template, channel)
        ctx = _render_context(context)
        warnings: list[str] = []
        if channel == "email":
            subject = " ".join(self._part(compiled, "subject", ctx).split())
            ctx["subject"] = subject
            html = self._email_html(compiled, ctx)
            if "txt" in compiled.parts:
                text = self._part(compiled, "txt", ctx)
                if compiled.text_derived:
                    text = _tidy_text(text)
            else:
                text = _html2text(HTML_ONLY.sub("", html))
            return Rendered(subject=subject, html=html, text=text)
        if channel == "sms":
            sms = self._part(compiled, "sms", ctx).strip()
            length = sms_segments(sms)
            note = _sms_warning(f"{template}.sms.j2", length)
            if note:
                warnings.append(note)
            return Rendered(sms=sms, segments=length.segments, warnings=tuple(warnings))
        if channel == "push":
            title = (
                " ".join(self._part(compiled, "subject", ctx).split())
                if "subject" in compiled.parts
                else ""
            )
            return Rendered(subject=title, text=self._part(compiled, "push", ctx).strip())
        payload = self._part(compiled, "json", ctx)
        try:
            json.loads(payload)
        except ValueError as exc:
            raise TemplateError(
                f"{template}.json.j2 did not render valid JSON ({exc})",
                hint="write values with |tojson",
            ) from None
        return Rendered(text=payload)

    def _part(self, compiled: _Compiled, part: str, ctx: dict[str, Any]) -> str:
        p = compiled.parts[part]
        try:
            return p.template.render(ctx)
        except Exception as exc:  # every template failure becomes one clear TemplateError
            raise _explain(exc, p) from exc

    def _email_html(self, compiled: _Compiled, ctx: dict[str, Any]) -> str:
        if compiled.html_fast is None:
            return inline_css(self._part(compiled, "html", ctx))
        try:
            html = compiled.html_fast.render(ctx)
        except Exception as exc:  # re-render the plain source for an error naming the line
            self._part(compiled, "html", ctx)
            raise _explain(exc, compiled.parts["html"]) from exc
        if not compiled.verified:
            self._verify(compiled, ctx)
            if compiled.html_fast is None:
                return inline_css(self._part(compiled, "html", ctx))
        return html

    def _verify(self, compiled: _Compiled, ctx: dict[str, Any]) -> bool:
        """Does the load-time inlined template render what per-message inlining would? If
        not, inline this template per message from now on. (Rendered without the click
        tracker, so a tracker never sees a link twice.)"""
        if compiled.html_fast is None:
            return True
        plain = {**ctx, "_track": None}
        fast = compiled.html_fast.render(plain)
        slow = inline_css(self._part(compiled, "html", plain))
        if _squash(inline_css(fast)) == _squash(inline_css(slow)):
            compiled.verified = True
            return True
        compiled.html_fast = None
        compiled.html_mode = "message"
        note = (
            f"{compiled.name}.html.j2: inlining CSS at load changed the markup, so it is "
            "inlined per message (close every element inside the Jinja block that opens it; "
            "write <tbody> in tables)"
        )
        compiled.notes.append(note)
        log.warning(note)
        return False

    def validate(
        self, template: str, channel: str, contexts: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """Render the template with each sample context; an unknown variable or any other
        failure raises `TemplateError` naming the file, line and variable. Returns warnings
        (SMS length, CSS inlined per message)."""
        compiled = self._get(template, channel)
        warnings: list[str] = []
        for sample in contexts:
            rendered = self.render(template, channel, sample)
            if channel == "email" and compiled.html_fast is not None:
                self._verify(compiled, _render_context(sample) | {"subject": rendered.subject})
            warnings += [w for w in rendered.warnings if w not in warnings]
        warnings += [n for n in compiled.notes if n not in warnings]
        return warnings


_SPACE = re.compile(r"\s+")


def _squash(html: str) -> str:
    """Whitespace runs -> one space (a parser places blank text nodes differently)."""
    return _SPACE.sub(" ", html).strip()


def _mtime(path: str) -> int | None:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return None


def _short(path: str) -> str:
    return Path(path).name if path and path != "?" else path


def _render_context(context: Mapping[str, Any]) -> dict[str, Any]:
    ctx = dict(context)
    links = ctx.get("links")
    if isinstance(links, Links):
        ctx["links"] = links.urls()
        ctx["_track"] = links.track
    elif links is None:
        ctx["links"] = Links().urls()
    return ctx


def _explain(exc: Exception, part: _Part) -> TemplateError:
    """One error naming the file, line, source line and what went wrong."""
    if isinstance(exc, TemplateError):
        return exc
    file, line = _locate(exc.__traceback__, part)
    what = (
        str(exc)
        if isinstance(exc, JinjaTemplateError | ValueError | TypeError)
        else f"{type(exc).__name__}: {exc}"
    )
    if isinstance(exc, TemplateNotFound):
        what = f"included template {exc.name!r} not found"
    snippet = ""
    src_line = _source_line(file, line)
    if src_line:
        snippet = f" in `{src_line}`"
    kind = "forbidden by the sandbox: " if isinstance(exc, SecurityError) else ""
    hint = (
        "templates may not read _attributes or change data"
        if isinstance(exc, SecurityError)
        else "use a variable listed in docs/templates.md; guard optional ones "
        "(last_order, referral, membership) with {% if ... %}"
    )
    return TemplateError(f"{_short(file)} line {line}{snippet}: {kind}{what}", hint=hint)


def _locate(tb: TracebackType | None, part: _Part) -> tuple[str, int]:
    """The innermost template frame of a traceback, mapped back to its file and line."""
    found: tuple[str, int] | None = None
    for frame_tb in _frames(tb):
        filename = frame_tb.tb_frame.f_code.co_filename
        if filename == part.key:
            found = part.source.where(frame_tb.tb_lineno)
        elif filename.endswith(".j2") and Path(filename).exists():
            found = (filename, frame_tb.tb_lineno)
    return found or (part.source.files[0] if part.source.files else "?", 0)


def _frames(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def _source_line(file: str, line: int) -> str:
    try:
        lines = Path(file).read_text(encoding="utf-8").split("\n")
    except OSError:
        return ""
    text = lines[line - 1].strip() if 1 <= line <= len(lines) else ""
    return text if len(text) <= 120 else text[:117] + "..."


# -- validation ------------------------------------------------------------------------------

SAMPLE_NOW = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)


def sample_context(
    *,
    bare: bool = False,
    coupons: Mapping[str, Mapping[str, Any]] | None = None,
    currency: str = "USD",
    now: datetime = SAMPLE_NOW,
    credits: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A context shaped like `services.campaign_context.build_contexts`'s, for validation:
    ``bare`` is a customer with nothing optional (no name, orders, points, referral code,
    membership or recommendations, and a transactional message's links). ``coupons``:
    name -> (kind, value, expires_days); ``credits``: name -> (amount)."""
    day = timedelta(days=1)
    coupon_view: dict[str, dict[str, Any]] = {
        name: {
            "code": "SAMP-LECO-DE00",
            "kind": str(spec.get("kind", "amount_off")),
            "value": int(spec.get("value", 1000)),
            "expires_at": now + int(spec.get("expires_days", 7)) * day,
            "description": coupon_description(
                str(spec.get("kind", "amount_off")), int(spec.get("value", 1000)), currency
            ),
        }
        for name, spec in (coupons or {}).items()
    }
    credit_view: dict[str, dict[str, Any]] = {
        name: {
            "amount": int(spec.get("amount", 1000)),
            "currency": currency,
            "balance": int(spec.get("amount", 1000)),
            "description": format_money(int(spec.get("amount", 1000)), currency),
        }
        for name, spec in (credits or {}).items()
    }
    store = {"name": "Example Shop", "currency": currency, "timezone": "UTC", "url": ""}
    links = Links() if bare else Links(
        unsubscribe="https://example.invalid/u/sample",
        preferences="https://example.invalid/p/sample",
        open_pixel="https://example.invalid/o/sample.gif",
        view_online="https://example.invalid/v/sample",
    )  # fmt: skip
    run = {
        "coupons": {
            name: {"code": view["code"], "kind": view["kind"], "value": view["value"],
                   "expires_at": to_micros(view["expires_at"])}
            for name, view in coupon_view.items()
        },
        "credits": {
            name: {"amount": view["amount"], "currency": currency, "balance": view["balance"]}
            for name, view in credit_view.items()
        },
        "variants": {},
        "trigger": {},
    }  # fmt: skip
    if bare:
        return {
            "customer": {
                "id": 1, "first_name": "there", "last_name": "", "full_name": "",
                "has_name": False, "email": "customer@example.invalid", "phone": None,
                "timezone": "UTC", "city": None, "country": None, "orders_count": 0,
                "attributes": {}, "tags": [],
            },
            "store": store,
            "last_order": None,
            "loyalty": {"points": 0, "pending": 0, "credit": 0, "tier": None, "tier_perks": [],
                        "next_expiry": None},
            "coupons": coupon_view,
            "credits": credit_view,
            "referral": None,
            "membership": None,
            "recommendations": [],
            "run": run,
            "now": now,
            "links": links,
        }  # fmt: skip
    product = {
        "sku": "SKU-2", "name": "Sample product", "price": 2400, "currency": currency,
        "category": "Sample", "url": "https://example.invalid/products/sku-2",
        "image": "https://example.invalid/sku-2.jpg",
    }  # fmt: skip
    return {
        "customer": {
            "id": 1, "first_name": "Alex", "last_name": "Example", "full_name": "Alex Example",
            "has_name": True, "email": "alex@example.invalid", "phone": "+14155550100",
            "timezone": "America/New_York", "city": "Springfield", "country": "US",
            "orders_count": 3, "attributes": {}, "tags": [],
        },
        "store": {**store, "url": "https://example.invalid/"},
        "last_order": {
            "number": "1001", "date": now - 20 * day, "status": "paid", "currency": currency,
            "subtotal": 4800, "discount": 0, "shipping": 500, "tax": 0, "total": 5300,
            "items": [
                {"name": "Sample item", "sku": "SKU-1", "quantity": 2, "price": 2400,
                 "total": 4800, "category": "Sample", "url": "https://example.invalid/sku-1",
                 "image": ""},
            ],
        },
        "loyalty": {
            "points": 1250, "pending": 100, "credit": 500, "tier": "Gold",
            "tier_perks": ["free shipping"],
            "next_expiry": {"points": 200, "at": now + 30 * day},
        },
        "coupons": coupon_view,
        "credits": credit_view,
        "referral": {
            "code": "ABCD-EFGH-JKMN", "link": "https://shop.example/r/ABCDEFGHJKMN",
            "share_texts": {c: "Place your first order through my link: https://shop.example/r/ABCDEFGHJKMN"
                            for c in ("email", "facebook", "messenger", "sms", "whatsapp", "copy")},
            "share_urls": {c: "https://example.invalid/share"
                           for c in ("email", "facebook", "messenger", "sms", "whatsapp", "copy")},
            "email_subject": "Alex invited you",
            "friend_reward": "$25.00 off your next order",
            "referrer_reward": "$25.00 off your next order",
        },
        "membership": {
            "plan": "Plus (monthly)", "plan_key": "plus-monthly", "status": "active",
            "live": True, "renews_at": now + 10 * day, "trial_ends_at": None,
            "ends_at": None, "currency": currency, "savings_this_year": 2599,
            "fees_this_year": 999, "net_savings_this_year": 1600, "member_orders_this_year": 3,
        },
        "recommendations": [product],
        "run": run,
        "now": now,
        "links": links,
    }  # fmt: skip


def coupons_before(flow: Flow) -> dict[str, set[str]]:
    """Per step: the names of the coupons issued on every path from the start to it (what
    its templates may use without ``{% if coupons.NAME is defined %}``)."""
    preds: dict[str, list[str]] = {s.id: [] for s in flow.steps}
    for s in flow.steps:
        for nxt in flow.successors(s.id):
            if nxt in preds:
                preds[nxt].append(s.id)
    memo: dict[str, set[str]] = {}

    def before(step_id: str) -> set[str]:
        if step_id not in memo:
            incoming = preds[step_id]
            memo[step_id] = (
                set.intersection(*(after(p) for p in incoming))
                if incoming and step_id != flow.first()
                else set()
            )
        return memo[step_id]

    def after(step_id: str) -> set[str]:
        step = flow.step(step_id)
        found = set(before(step_id))
        if isinstance(step, IssueCoupon):
            found.add(step.coupon.name)
        return found

    return {s.id: before(s.id) for s in flow.steps}


def sample_coupons(flow: Flow, step_id: str) -> dict[str, dict[str, Any]]:
    """The coupon specs (kind, value, expires_days) issued on every path to ``step_id``,
    keyed by name: for `sample_context` and `sample_run_context`."""
    names = coupons_before(flow)[step_id]
    return {
        s.coupon.name: {
            "kind": s.coupon.kind,
            "value": s.coupon.value,
            "expires_days": s.coupon.expires_days,
        }
        for s in flow.steps
        if isinstance(s, IssueCoupon) and s.coupon.name in names
    }


#: The most combinations of coupons and credits `validate_flow` renders a step's template
#: with (a flow would need many optional gifts on branching paths to have more).
MAX_CARRIED = 32


def _issued(step: Step) -> tuple[str, str] | None:
    """The run-context entry a step adds for templates: (section, name)."""
    if isinstance(step, IssueCoupon):
        return "coupons", step.coupon.name
    if isinstance(step, GrantCredit):
        return "credits", step.credit.name
    return None


def carried_before(flow: Flow) -> dict[str, list[dict[tuple[str, str], str]]]:
    """Per step: each distinct combination of coupons and credits a run can hold when it
    reaches the step (one per path, duplicates dropped; at most `MAX_CARRIED`), as
    ``(section, name) -> id of the step that issued it`` (a later step issuing the same
    name replaces the earlier one). An A/B split whose arms give different gifts under one
    name (a coupon in one arm, store credit in the other) gives one combination per arm."""
    preds: dict[str, list[str]] = {s.id: [] for s in flow.steps}
    for s in flow.steps:
        for nxt in flow.successors(s.id):
            if nxt in preds:
                preds[nxt].append(s.id)
    memo: dict[str, list[dict[tuple[str, str], str]]] = {}

    def before(step_id: str) -> list[dict[tuple[str, str], str]]:
        if step_id not in memo:
            found: list[dict[tuple[str, str], str]] = []
            if step_id == flow.first():
                found.append({})
            for p in preds[step_id]:
                for state in after(p):
                    if state not in found and len(found) < MAX_CARRIED:
                        found.append(state)
            memo[step_id] = found
        return memo[step_id]

    def after(step_id: str) -> list[dict[tuple[str, str], str]]:
        entry = _issued(flow.step(step_id))
        states = before(step_id)
        return states if entry is None else [{**state, entry: step_id} for state in states]

    return {s.id: before(s.id) for s in flow.steps}


def _gift_specs(
    flow: Flow, state: Mapping[tuple[str, str], str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The coupon specs (kind, value, expires_days) and credit specs (amount) of one
    combination from `carried_before`, keyed by name."""
    coupons: dict[str, dict[str, Any]] = {}
    credits: dict[str, dict[str, Any]] = {}
    for (section, name), step_id in state.items():
        step = flow.step(step_id)
        if section == "coupons" and isinstance(step, IssueCoupon):
            coupons[name] = {
                "kind": step.coupon.kind,
                "value": step.coupon.value,
                "expires_days": step.coupon.expires_days,
            }
        elif isinstance(step, GrantCredit):
            credits[name] = {"amount": step.credit.amount}
    return coupons, credits


def sample_run_context(
    flow: Flow, step_id: str, *, now: datetime | None = None, currency: str = "USD"
) -> dict[str, Any]:
    """A run context for previewing ``step_id`` of ``flow`` for a customer who has no run:
    the coupons (with the code ``PREVIEW-CODE``) and store credits the flow would have given
    by then on every path (shaped like a stored run context: JSON-ready, times in epoch
    micros)."""
    at = now or datetime.now(UTC)
    states = carried_before(flow)[step_id] or [{}]
    every = {
        k: v for k, v in states[0].items() if k[0] == "credits" and all(k in s for s in states)
    }
    _, credits = _gift_specs(flow, every)
    return {
        "coupons": {
            name: {
                "code": "PREVIEW-CODE",
                "kind": spec["kind"],
                "value": spec["value"],
                "expires_at": to_micros(at + timedelta(days=int(spec["expires_days"]))),
            }
            for name, spec in sample_coupons(flow, step_id).items()
        },
        "credits": {
            name: {"amount": spec["amount"], "currency": currency, "balance": spec["amount"]}
            for name, spec in credits.items()
        },
        "variants": {},
        "trigger": {},
    }


def validate_flow(flow: Flow, templates: TemplateSet, *, currency: str = "USD") -> list[str]:
    """Check every Send step of ``flow``: its template exists for its channel, parses, and
    renders with two sample customers (one with everything, one with nothing optional)
    for each combination of coupons and store credits a run can hold at that step (one per
    path: an A/B split's arms are each rendered). Raises `TemplateError` naming the step and
    file; returns warnings (SMS length, CSS per message)."""
    warnings: list[str] = []
    carried = carried_before(flow)
    for step in flow.steps:
        if not isinstance(step, Send):
            continue
        samples = []
        for state in carried[step.id]:
            coupons, credits = _gift_specs(flow, state)
            samples += [
                sample_context(coupons=coupons, credits=credits, currency=currency),
                sample_context(bare=True, coupons=coupons, credits=credits, currency=currency),
            ]
        where = f"flow {flow.name!r} step {step.id!r} ({step.send.channel} {step.send.template!r})"
        try:
            found = templates.validate(step.send.template, step.send.channel, samples)
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc.message}", hint=exc.hint) from exc
        warnings += [f"{where}: {w}" for w in found]
    return warnings


def micros_to_datetime(value: Any) -> datetime | None:
    """Epoch micros (or ISO text, or a datetime) -> aware datetime; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        micros = int(value)
        if abs(micros) < 10**11:  # seconds, not micros
            micros *= MICROS_PER_SECOND
        return from_micros(micros)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
