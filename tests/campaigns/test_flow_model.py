"""The flow model: what a valid flow file looks like and how every mistake is reported."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from boomerang.campaigns.flow import END, Ab, Send, Split, Wait, parse_flow
from boomerang.errors import InputError

WINBACK = """
name: win-back
title: Win-back series
trigger: {type: segment_entered, segment: at-risk}
exit: {placed_order: true}
steps:
  - send: {channel: email, template: winback-1}
  - wait: 1d
  - split: {rule: 'orders.count >= 3', then: vip, otherwise: s4}
  - coupon: {kind: percent_off, value: 1500, expires_days: 7}
    next: s6
  - id: vip
    task: {title: Send a handwritten note}
  - send: {channel: email, template: winback-2}
"""


def flow_of(text: str, **changes: Any) -> dict[str, Any]:
    raw = yaml.safe_load(text)
    raw.update(changes)
    return dict(raw)


def test_a_flow_file_becomes_a_graph_of_steps() -> None:
    flow = parse_flow(flow_of(WINBACK), "winback.yaml")
    assert [s.id for s in flow.steps] == ["s1", "s2", "s3", "s4", "vip", "s6"]
    assert isinstance(flow.steps[0], Send) and isinstance(flow.steps[1], Wait)
    assert isinstance(flow.steps[2], Split)
    assert flow.successors("s3") == ["vip", "s4"]
    assert flow.following("s4") == "s6"  # its own next
    assert flow.following("vip") == "s6"  # the step below
    assert flow.following("s6") == END
    assert flow.holdout == 0.10 and flow.reentry == "never" and flow.priority == 50


def test_ab_split_variants() -> None:
    flow = parse_flow(
        {
            "name": "welcome",
            "trigger": {"type": "signed_up"},
            "steps": [
                {"ab": {"variants": [{"name": "dollar", "weight": 1, "next": "a"},
                                     {"name": "percent", "weight": 1, "next": "b"}]}},
                {"id": "a", "send": {"channel": "email", "template": "w-dollar"}, "next": "end"},
                {"id": "b", "send": {"channel": "email", "template": "w-percent"}},
            ],
        }
    )  # fmt: skip
    assert isinstance(flow.steps[0], Ab)
    assert flow.successors("s1") == ["a", "b"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Win Back"}, r"winback.yaml: name: String should match pattern"),
        ({"trigger": {"type": "moon_phase"}}, r"trigger: Input tag 'moon_phase'"),
        ({"trigger": {"type": "order_placed", "which": "nth"}}, r"give n exactly when which is nth"),
        ({"holdout": 1.5}, r"holdout: Input should be less than 1"),
        ({"steps": []}, r"steps: List should have at least 1 item"),
        ({"steps": [{"send": {"channel": "fax", "template": "x"}}]}, r"steps\[0\] \(s1\)\.send\.channel"),
        ({"steps": [{"wait": "30"}]}, r"steps.s1.wait.duration: window '30' has no unit"),
        ({"steps": [{"wait": {"duration": "1d", "until_time": "09:00"}}]}, r"exactly one of duration"),
        ({"steps": [{"send": {"channel": "email", "template": "x"}, "wait": "1d"}]},
         r"steps\[0\]: a step needs exactly one of .* \(it has send, wait\)"),
        ({"steps": [{"send": {"channel": "email", "template": "x"}, "next": "nowhere"}]},
         r"step 's1' continues to unknown step 'nowhere'"),
        ({"steps": [{"id": "a", "wait": "1d", "next": "b"}, {"id": "b", "wait": "1d", "next": "a"}]},
         r"the steps loop \(a -> b -> a\)"),
        ({"steps": [{"id": "a", "wait": "1d", "next": "end"}, {"id": "b", "wait": "1d"}]},
         r"step 'b' can never be reached"),
        ({"steps": [{"split": {"rule": "orders.cnt >= 3", "then": "end", "otherwise": "end"}}]},
         r"steps.s1.split.rule.*orders.cnt"),
        ({"exit": {"rule": "orders.count >="}}, r"exit.rule"),
        ({"steps": [{"id": "a", "wait": "1d"}, {"id": "a", "wait": "2d"}]}, r"step id 'a' is used twice"),
    ],
)  # fmt: skip
def test_every_mistake_names_the_file_the_field_and_the_fix(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_flow(flow_of(WINBACK, **change), "winback.yaml")
    assert caught.value.message.startswith("winback.yaml")
    assert caught.value.hint


def test_yes_no_keys_are_not_accepted_because_yaml_reads_them_as_booleans() -> None:
    text = WINBACK.replace("then: vip, otherwise: s4", "yes: vip, no: s4")
    with pytest.raises(InputError, match=r"split\.then: Field required"):
        parse_flow(yaml.safe_load(text), "winback.yaml")
