"""Templates: the sandbox, unknown variables named with file and line, CSS inlined once per
template with the Jinja placeholders intact, the derived plain-text part, the money / date /
track filters, SMS length, and validation of a flow's templates (docs/templates.md).

No database: contexts are `sample_context` or hand-made dicts of the same shape.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import css_inline
import pytest
from jinja2.exceptions import SecurityError

from boomerang.campaigns.flow import parse_flow
from boomerang.campaigns.templates import (
    Links,
    TemplateError,
    TemplateSet,
    format_date,
    format_money,
    sample_context,
    sample_run_context,
    sms_segments,
    validate_flow,
)
from boomerang.domain.clock import to_micros

OFFER = {"offer": {"kind": "amount_off", "value": 1000, "expires_days": 7}}


def store_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "templates"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def one(tmp_path: Path, html: str, subject: str = "Hello", **more: str) -> TemplateSet:
    files = {"t.subject.j2": subject, "t.html.j2": html}
    files.update({k.replace("_", ".") + ".j2": v for k, v in more.items()})
    return TemplateSet(store_dir(tmp_path, files))


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", html).strip()


def ctx(**changes: Any) -> dict[str, Any]:
    base = sample_context(coupons=OFFER)
    for key, value in changes.items():
        base[key] = value
    return base


# -- the sandbox -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "{{ ''.__class__ }}",
        "{{ customer.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ [].append(1) }}",  # the immutable sandbox: templates cannot change data
        "{{ run.update({'x': 1}) }}",
    ],
)
def test_sandbox_blocks_unsafe_access(tmp_path: Path, expr: str) -> None:
    ts = one(tmp_path, f"<p>{expr}</p>")
    with pytest.raises(TemplateError) as caught:
        ts.render("t", "email", ctx())
    assert isinstance(caught.value.__cause__, SecurityError)
    assert "t.html.j2 line 1" in caught.value.message
    assert "sandbox" in caught.value.message


def test_format_string_escape_is_blocked(tmp_path: Path) -> None:
    ts = one(tmp_path, "<p>{{ '{0.__class__}'.format(customer) }}</p>")
    with pytest.raises(TemplateError) as caught:
        ts.render("t", "email", ctx())
    assert isinstance(caught.value.__cause__, SecurityError)


# -- unknown variables -----------------------------------------------------------------------------


def test_unknown_attribute_names_variable_file_and_line(tmp_path: Path) -> None:
    ts = one(tmp_path, "<h1>Hi</h1>\n<p>Thanks</p>\n<p>{{ customer.nickname }}</p>\n")
    with pytest.raises(TemplateError) as caught:
        ts.validate("t", "email", [ctx()])
    msg = caught.value.message
    assert "t.html.j2 line 3" in msg
    assert "'nickname' is undefined" in msg
    assert "first_name" in msg  # what the customer does have
    assert "{{ customer.nickname }}" in msg


def test_unknown_top_level_variable(tmp_path: Path) -> None:
    ts = one(tmp_path, "<p>ok</p>", subject="Hi {{ shoe_size }}")
    with pytest.raises(TemplateError, match=r"t\.subject\.j2 line 1.*'shoe_size' is undefined"):
        ts.validate("t", "email", [ctx()])


def test_unknown_variable_in_a_layout_names_the_layout(tmp_path: Path) -> None:
    d = store_dir(
        tmp_path,
        {
            "t.subject.j2": "Hi",
            "t.html.j2": "<p>body</p>",
            "base.html.j2": "<html><body>\n{% block content %}{% endblock %}\n{{ footer_text }}\n</body></html>",
        },
    )
    with pytest.raises(TemplateError, match=r"base\.html\.j2 line 3.*'footer_text' is undefined"):
        TemplateSet(d).render("t", "email", ctx())


def test_optional_sections_must_be_guarded(tmp_path: Path) -> None:
    """`membership` is None for a customer without one: validation renders a bare customer
    too, so an unguarded use fails before anything is sent."""
    ts = one(tmp_path, "<p>{{ membership.plan }}</p>")
    ts.render("t", "email", ctx())  # a member: fine
    with pytest.raises(TemplateError, match="line 1"):
        ts.validate("t", "email", [ctx(), sample_context(bare=True, coupons=OFFER)])
    guarded = one(tmp_path / "g", "{% if membership %}<p>{{ membership.plan }}</p>{% endif %}")
    guarded.validate("t", "email", [ctx(), sample_context(bare=True, coupons=OFFER)])


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    ts = one(tmp_path, "<p>a</p>\n{% if x %}\n<p>b</p>\n")
    with pytest.raises(TemplateError, match=r"t\.html\.j2 line \d"):
        ts.render("t", "email", ctx())


def test_dict_keys_win_over_dict_methods(tmp_path: Path) -> None:
    ts = one(tmp_path, "{% for i in last_order.items %}<span>{{ i.name }}</span>{% endfor %}")
    assert "<span>Sample item</span>" in ts.render("t", "email", ctx()).html


# -- CSS inlining ----------------------------------------------------------------------------------

TABLE = """<style>.price { color: #b91c1c; } td.name { font-weight: 700; } .cta { padding: 14px; }</style>
<table><tbody>{% for item in last_order.items %}<tr><td class="name">{{ item.name }}</td><td class="price">{{ item.total | money }}</td></tr>{% endfor %}</tbody></table>
<a class="cta" href="{{ 'https://shop.example/a?x=1&y=2' | track }}">Shop &amp; save</a>
"""


def test_raw_css_inline_breaks_jinja_placeholders() -> None:
    """Why the template is protected before inlining: the HTML parser moves a loop out of
    its table and escapes an `&` inside an expression."""
    src = "<table>{% for i in x %}<tr><td>{{ i }}</td></tr>{% endfor %}</table><a href=\"{{ '?a=1&b=2' }}\">x</a>"
    out = css_inline.inline(src)
    assert out.index("{% for i in x %}") < out.index("<table>")  # moved before the table
    assert "&amp;b=2" in out  # the expression's string literal changed


def test_css_is_inlined_once_at_load_and_placeholders_survive(tmp_path: Path) -> None:
    context = ctx()
    context["last_order"] = {
        **context["last_order"],
        "items": [
            {"name": "Mug", "total": 1200},
            {"name": "Tea & Honey", "total": 800},
            {"name": "Kettle", "total": 4500},
        ],
    }
    ts = one(tmp_path, TABLE)
    html = ts.render("t", "email", context).html
    assert ts.mode("t", "email")["css"] == "load"
    assert ts.mode("t", "email")["verified"] is True
    rows = re.findall(r"<tr>(<td class=\"name\".*?)</tr>", html)
    assert len(rows) == 3  # the loop stayed inside the table
    assert 'class="name" style="font-weight: 700;">Tea &amp; Honey</td>' in rows[1]
    assert 'style="color: #b91c1c;">$45.00</td>' in rows[2]
    assert 'href="https://shop.example/a?x=1&amp;y=2"' in html  # escaped once, by Jinja
    assert 'class="cta"' in html and "padding: 14px" in html
    assert ".price" not in html  # the rule was inlined, not left in <style>
    # The same output as inlining every rendered message.
    per_message = TemplateSet(ts.directory, inline_at_load=False).render("t", "email", context)
    assert squash(per_message.html) == squash(html)


def test_media_queries_are_kept_for_mobile() -> None:
    html = TemplateSet().render("generic", "email", ctx()).html
    assert "@media only screen and (max-width: 620px)" in html
    assert "max-width: 600px" in html  # the single 600px column
    assert '<meta name="viewport"' in html
    assert "<style>" in html and ".container {" not in html  # only at-rules stay in <style>


def test_markup_the_parser_rewrites_falls_back_to_inlining_per_message(tmp_path: Path) -> None:
    """A loop straight inside <table> (no <tbody>): the parser adds a <tbody> inside the
    loop, so the inlined source would repeat it. The first render notices the difference
    and inlines that template per message from then on."""
    html = (
        "<style>.n { color: red; }</style><table>{% for i in last_order.items %}"
        '<tr><td class="n">{{ i.name }}</td></tr>{% endfor %}</table>'
    )
    context = ctx()
    context["last_order"] = {**context["last_order"], "items": [{"name": "A"}, {"name": "B"}]}
    ts = one(tmp_path, html)
    first = ts.render("t", "email", context).html
    assert ts.mode("t", "email")["css"] == "message"
    assert "per message" in ts.mode("t", "email")["notes"][0]
    assert (
        '<tbody><tr><td class="n" style="color: red;">A</td></tr>'
        '<tr><td class="n" style="color: red;">B</td></tr></tbody></table>'
    ) in first
    # Jinja inside a tag (not in an attribute value) cannot survive the parser at all.
    attr = one(
        tmp_path / "attr",
        '<style>.a { color: red; }</style><p {% if customer.has_name %}class="a"{% endif %}>x</p>',
    )
    assert (
        '<p class="a" style="margin: 0 0 16px 0;color: red;">x</p>'
        in attr.render("t", "email", ctx()).html
    )
    assert attr.mode("t", "email")["css"] == "message"


def test_include_of_a_partial_is_inlined_with_the_layout_css(tmp_path: Path) -> None:
    ts = TemplateSet()
    html = ts.render("generic", "email", ctx()).html
    assert ts.mode("generic", "email")["css"] == "load"
    # _products.html.j2's markup got the layout's .product rule.
    assert '<div class="product" style="padding: 8px 0;border-bottom: 1px solid #e4e4e7;">' in html


def test_layout_none_is_a_whole_document(tmp_path: Path) -> None:
    ts = one(
        tmp_path,
        "{# layout: none #}<html><head><style>p { margin: 0; }</style></head>"
        "<body><p>{{ customer.first_name }}</p></body></html>",
    )
    html = ts.render("t", "email", ctx()).html
    assert '<p style="margin: 0;">Alex</p>' in html
    assert "Unsubscribe" not in html


def test_base_layout_footer_and_pixel() -> None:
    links = Links(
        unsubscribe="https://t.example/u/1", preferences="https://t.example/p/1",
        open_pixel="https://t.example/o/1.gif",
    )  # fmt: skip
    html = TemplateSet().render("generic", "email", {**ctx(), "links": links}).html
    assert 'href="https://t.example/u/1"' in html and ">Unsubscribe</a>" in html
    assert 'href="https://t.example/p/1"' in html
    assert '<img src="https://t.example/o/1.gif" width="1" height="1"' in html
    bare = TemplateSet().render("generic", "email", sample_context(bare=True)).html
    assert "Unsubscribe" not in bare and "<img" not in bare  # transactional: no links given


def test_a_changed_file_is_picked_up(tmp_path: Path) -> None:
    d = store_dir(tmp_path, {"t.subject.j2": "One", "t.html.j2": "<p>1</p>"})
    ts = TemplateSet(d, reload_seconds=0.001)
    assert ts.render("t", "email", ctx()).subject == "One"
    time.sleep(0.01)
    (d / "t.subject.j2").write_text("Two", encoding="utf-8")
    time.sleep(0.01)
    assert ts.render("t", "email", ctx()).subject == "Two"


def test_store_templates_override_builtins(tmp_path: Path) -> None:
    d = store_dir(tmp_path, {"generic.subject.j2": "Our own subject"})
    ts = TemplateSet(d)
    rendered = ts.render("generic", "email", ctx())
    assert rendered.subject == "Our own subject"
    assert "Picked for you" in rendered.html  # the built-in HTML part is still used


# -- the plain-text part ---------------------------------------------------------------------------


def test_text_part_is_derived_from_the_html(tmp_path: Path) -> None:
    ts = one(
        tmp_path,
        "{% block preheader %}Hidden preheader{% endblock %}"
        "<h1>Hi {{ customer.first_name }}</h1><p>Use <strong>{{ coupons.offer.code }}</strong>"
        " before {{ coupons.offer.expires_at | date }}.</p>"
        '<p><a class="button" href="{{ \'https://shop.example/\' | track }}">Shop now</a></p>',
    )
    links = Links(unsubscribe="https://t.example/u/1", track=lambda u: f"https://t.example/c?u={u}")
    text = ts.render("t", "email", {**ctx(), "links": links}).text
    assert ts.mode("t", "email")["text_derived"] is True
    assert "# Hi Alex" in text
    assert "Use SAMP-LECO-DE00 before March 8, 2027." in text
    assert "[Shop now](https://t.example/c?u=https://shop.example/)" in text
    assert "[Unsubscribe](https://t.example/u/1)" in text
    assert "Hidden preheader" not in text and "<" not in text


def test_a_text_template_is_used_when_given(tmp_path: Path) -> None:
    ts = one(tmp_path, "<p>html</p>", t_txt="Plain hello {{ customer.first_name }}")
    text = ts.render("t", "email", ctx()).text
    assert text.startswith("Plain hello Alex")
    assert "Unsubscribe: https://example.invalid/u/sample" in text  # base.txt.j2's footer


def test_builtin_generic_text_variant() -> None:
    text = TemplateSet().render("generic", "email", ctx()).text
    assert "Hi Alex," in text
    assert "Use this code at checkout: SAMP-LECO-DE00" in text
    assert "- Sample item x 2: $48.00" in text
    assert "You have 1250 points and you are a Gold member." in text


# -- filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (1250, "USD", "$12.50"),
        (123456, "USD", "$1,234.56"),
        (-500, "USD", "-$5.00"),
        (1250, "JPY", "¥1,250"),
        (1250, "KWD", "1.250 KWD"),
        (999, "EUR", "€9.99"),
        (2500, "CHF", "25.00 CHF"),
        (None, "USD", ""),
    ],
)
def test_format_money(minor: int | None, currency: str, shown: str) -> None:
    assert format_money(minor, currency) == shown


def test_money_filter_defaults_to_the_store_currency(tmp_path: Path) -> None:
    ts = one(
        tmp_path,
        "<span>{{ 1250 | money }} {{ 1250 | money('EUR') }} {{ 1250 | money('JPY') }}</span>",
    )
    assert "<span>$12.50 €12.50 ¥1,250</span>" in ts.render("t", "email", ctx()).html


def test_date_filter_uses_the_customers_timezone(tmp_path: Path) -> None:
    moment = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)  # still February 28 in New York
    ts = one(
        tmp_path,
        "<span>{{ when | date }}|{{ when | date('short') }}|{{ when | date('iso') }}|"
        "{{ when | date(tz='Asia/Tokyo') }}|{{ micros | date('%d.%m.%Y %H:%M') }}</span>",
    )
    context = {**ctx(), "when": moment, "micros": to_micros(moment)}
    assert context["customer"]["timezone"] == "America/New_York"
    html = ts.render("t", "email", context).html
    assert (
        "<span>February 28, 2027|Feb 28, 2027|2027-02-28|March 1, 2027|28.02.2027 22:00</span>"
        in html
    )
    assert format_date(None) == "" and format_date("2027-03-01T03:00:00+00:00") == "March 1, 2027"


def test_track_filter_rewrites_links_only_with_a_tracker(tmp_path: Path) -> None:
    ts = one(
        tmp_path,
        "<a href=\"{{ 'https://shop.example/x?a=1' | track }}\">x</a>"
        "<a href=\"{{ 'mailto:help@shop.example' | track }}\">m</a>",
    )
    plain = ts.render("t", "email", ctx()).html
    assert 'href="https://shop.example/x?a=1"' in plain
    seen: list[str] = []

    def tracker(url: str) -> str:
        seen.append(url)
        return "https://t.example/c/TOKEN"

    tracked = ts.render("t", "email", {**ctx(), "links": Links(track=tracker)}).html
    assert 'href="https://t.example/c/TOKEN"' in tracked
    assert 'href="mailto:help@shop.example"' in tracked  # not a web link: left alone
    assert set(seen) == {"https://shop.example/x?a=1"}  # once per part (HTML and text)


# -- SMS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("It’s here" + "a" * 61, "UCS-2", 70, 1),  # a curly apostrophe forces UCS-2
        ("It’s here" + "a" * 62, "UCS-2", 71, 2),
        ("", "GSM-7", 0, 0),
    ],
)
def test_sms_segments(text: str, encoding: str, units: int, segments: int) -> None:
    found = sms_segments(text)
    assert (found.encoding, found.units, found.segments) == (encoding, units, segments)


def test_sms_render_warns_when_it_needs_more_than_one_segment(tmp_path: Path) -> None:
    d = store_dir(
        tmp_path,
        {"short.sms.j2": "{{ store.name }}: hi {{ customer.first_name }}!",
         "long.sms.j2": "{{ store.name }}: " + "a" * 150 + " {{ customer.first_name }}’s"},
    )  # fmt: skip
    ts = TemplateSet(d)
    short = ts.render("short", "sms", ctx())
    assert (short.sms, short.segments, short.warnings) == ("Example Shop: hi Alex!", 1, ())
    long = ts.render("long", "sms", ctx())
    assert long.segments == 3
    assert "UCS-2" in long.warnings[0] and "3 SMS segments" in long.warnings[0]
    assert "long.sms.j2" in long.warnings[0]
    # SMS text is not HTML: nothing is escaped.
    amp = ts.render("short", "sms", {**ctx(), "store": {**ctx()["store"], "name": "Tea & Co"}})
    assert amp.sms.startswith("Tea & Co:")


# -- validating a flow's templates -----------------------------------------------------------------


def flow(steps: list[dict[str, Any]]) -> Any:
    return parse_flow(
        {"name": "f", "trigger": {"type": "signed_up"}, "steps": steps}, origin="f.yaml"
    )


def test_validate_flow_checks_every_send_step(tmp_path: Path) -> None:
    ts = TemplateSet(
        store_dir(
            tmp_path, {"code.subject.j2": "Code", "code.html.j2": "<p>{{ coupons.offer.code }}</p>"}
        )
    )
    ok = flow(
        [
            {"coupon": {"kind": "amount_off", "value": 500}},
            {"send": {"channel": "email", "template": "code"}},
        ]
    )
    assert validate_flow(ok, ts) == []
    preview_run = sample_run_context(ok, "s2", now=datetime(2027, 3, 1, tzinfo=UTC))
    assert preview_run["coupons"] == {
        "offer": {"code": "PREVIEW-CODE", "kind": "amount_off", "value": 500,
                  "expires_at": to_micros(datetime(2027, 3, 8, tzinfo=UTC))},
    }  # fmt: skip
    assert sample_run_context(ok, "s1")["coupons"] == {}
    # The coupon is issued after the send: at send time there is no coupons.offer.
    late = flow(
        [
            {"send": {"channel": "email", "template": "code"}},
            {"coupon": {"kind": "amount_off", "value": 500}},
        ]
    )
    with pytest.raises(TemplateError, match=r"step 's1' \(email 'code'\).*'offer' is undefined"):
        validate_flow(late, ts)
    # Issued on one branch only: not guaranteed either.
    branch = flow(
        [
            {
                "id": "split",
                "split": {"rule": "orders.count[30d] >= 2", "then": "give", "otherwise": "mail"},
            },
            {"id": "give", "coupon": {"kind": "percent_off", "value": 1000}},
            {"id": "mail", "send": {"channel": "email", "template": "code"}},
        ]
    )
    with pytest.raises(TemplateError, match="'offer' is undefined"):
        validate_flow(branch, ts)


def test_validate_flow_reports_a_missing_template_for_the_channel() -> None:
    missing = flow([{"send": {"channel": "sms", "template": "winback"}}])
    with pytest.raises(TemplateError, match=r"template 'winback' has no sms winback\.sms\.j2"):
        validate_flow(missing, TemplateSet())
    bad_name = flow([{"send": {"channel": "email", "template": "../etc/passwd"}}])
    with pytest.raises(TemplateError, match="not valid"):
        validate_flow(bad_name, TemplateSet())


def test_every_builtin_validates_on_its_channels() -> None:
    ts = TemplateSet()
    samples = [ctx(), sample_context(bare=True, coupons=OFFER), sample_context(bare=True)]
    names = ts.names()
    assert {"generic", "winback", "loyalty_points", "referral_invite", "membership_savings"} <= set(
        names
    )
    for name, channels in names.items():
        if name.startswith("lib-"):  # the library's: validated per flow, with its coupons
            continue  # (tests/campaigns/test_flow_library.py)
        for channel in channels:
            assert not [w for w in ts.validate(name, channel, samples) if "per message" in w]
        if "email" in channels:
            assert ts.mode(name, "email")["css"] == "load", name


def test_variables_name_what_a_template_reads() -> None:
    found = TemplateSet().variables("loyalty_points", "email")
    assert found is not None
    assert {"customer", "store", "loyalty", "links"} <= found
    assert "recommendations" not in found and "membership" not in found
