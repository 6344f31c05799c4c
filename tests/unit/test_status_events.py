"""The status-event contract (hub/status.py): validation of untrusted bodies, stable event ids,
round trip, routing key and precedence."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.status import (
    ACCEPTED,
    DEAD_LETTERED,
    DELIVERED,
    DELIVERING,
    EVENTS,
    PRECEDENCE,
    REPLAYED,
    REPLY_RECEIVED,
    RETRY_SCHEDULED,
    STATE_EVENTS,
    TRANSPORT_REPORT,
    TRANSPORT_REPORT_TIMEOUT,
    InvalidStatusEvent,
    StatusEvent,
    event_id_for,
)
from hub.topology import STATUS_EXCHANGE

MARKER = "Zyxwv-GEHEIM-Marker-4711"


def _event(**changes: Any) -> StatusEvent:
    base = StatusEvent("3f1c0a52-7a0e-4e5e-9d3b-1b2c3d4e5f60", DELIVERED, "portal.one", "azr:000100", "alpha",
                       at=1_700_000_000.25, detail={"xta_message_id": "urn:de:xta:messageid:1", "duplicate": False},
                       correlation_id="corr-1", transport_message_id="urn:de:xta:messageid:1", attempt=1,
                       application_ref="OZG-ANTRAG-00000001")
    return replace(base, **{"event_id": "", **changes})  # the id is derived again unless given


def _good() -> dict[str, Any]:
    return json.loads(_event().body())


def _body(**changes: Any) -> bytes:
    raw = _good()
    for key, value in changes.items():
        if value is _DROP:
            raw.pop(key)
        else:
            raw[key] = value
    return json.dumps(raw).encode()


_DROP = object()
LONG = MARKER * 9  # 216 characters: longer than any id may be

BAD_BODIES: list[tuple[str, bytes]] = [
    ("not_json", f"{{not json {MARKER}".encode()),
    ("not_utf8", b'{"message_id": "\xff\xfe' + MARKER.encode() + b'"}'),
    ("array", json.dumps([MARKER]).encode()),
    ("string", json.dumps(MARKER).encode()),
    ("number", b"42"),
    *[(f"missing_{name}", _body(**{name: _DROP})) for name in ("message_id", "event", "portal", "destination")],
    *[(f"{name}_not_text", _body(**{name: [MARKER]})) for name in ("message_id", "event", "portal", "destination",
                                                                     "adapter", "correlation_id", "reason",
                                                                     "transport_message_id", "application_ref",
                                                                     "event_id")],
    *[(f"{name}_too_long", _body(**{name: LONG})) for name in ("message_id", "portal", "destination", "adapter",
                                                                 "correlation_id", "reason", "transport_message_id",
                                                                 "application_ref", "event_id")],
    ("unknown_event", _body(event=MARKER)),
    ("unknown_event_long", _body(event=LONG)),
    ("empty_message_id", _body(message_id="")),
    ("reply_without_message_id_or_ref", _body(event=REPLY_RECEIVED, message_id="", application_ref=_DROP)),
    ("at_missing", _body(at=_DROP)),
    ("at_text", _body(at=MARKER)),
    ("at_bool", _body(at=True)),
    ("at_negative", _body(at=-1)),
    ("at_zero", _body(at=0)),
    ("at_before_2000", _body(at=946_684_799.9)),
    ("at_milliseconds", _body(at=1_700_000_000_250)),
    ("at_two_days_ahead", _body(at=time.time() + 2 * 86400)),
    ("at_huge", _body(at=1e300)),
    ("at_nan", _body(at=_DROP)[:-1] + b', "at": NaN}'),
    ("at_infinite", _body(at=_DROP)[:-1] + b', "at": Infinity}'),
    ("attempt_text", _body(attempt=MARKER)),
    ("attempt_bool", _body(attempt=True)),
    ("attempt_float", _body(attempt=1.5)),
    ("attempt_negative", _body(attempt=-1)),
    ("attempt_huge", _body(attempt=10**9)),
    ("detail_list", _body(detail=[MARKER])),
    ("detail_text", _body(detail=MARKER)),
    ("version_text", _body(version=MARKER)),
    ("version_bool", _body(version=True)),
    # nested beyond what the parser can take (RecursionError inside json.loads), or than a detail needs
    ("nested_array", b"[" * 100_000),
    ("nested_object", b'{"a":' * 100_000),
    ("nested_detail", _body(detail=_DROP)[:-1] + b', "detail": ' + b'{"x":' * 40 + b"1" + b"}" * 40 + b"}"),
]


@pytest.mark.parametrize("case, body", BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
def test_from_body_refuses_bad_bodies_without_echoing_them(case: str, body: bytes) -> None:
    with pytest.raises(InvalidStatusEvent) as caught:
        StatusEvent.from_body(body)
    text = str(caught.value)
    assert MARKER not in text and "Zyxwv" not in text and "GEHEIM" not in text, text
    assert caught.value.reason == "invalid_status_event"
    assert not caught.value.transient  # a bad event is parked, not retried


def test_good_body_and_its_allowed_variants_parse() -> None:
    assert StatusEvent.from_body(_body()) == _event()
    # unknown keys (a newer producer) are ignored; optional fields may be null or absent
    parsed = StatusEvent.from_body(_body(future_field={"x": 1}, adapter=None, correlation_id=_DROP, attempt=None))
    assert parsed.adapter is None and parsed.correlation_id is None and parsed.attempt is None
    # a reply that names no application id is linked by its application_ref
    reply = StatusEvent.from_body(_body(event=REPLY_RECEIVED, message_id=""))
    assert reply.message_id == "" and reply.application_ref == "OZG-ANTRAG-00000001"
    assert StatusEvent.from_body(_body(at=946_684_800, attempt=0)).at == 946_684_800.0  # 2000-01-01
    # up to a day ahead (clock skew between hosts)
    assert StatusEvent.from_body(_body(at=1_700_086_400.0), now=1_700_000_000.0).at == 1_700_086_400.0
    with pytest.raises(InvalidStatusEvent, match="'at'"):
        StatusEvent.from_body(_body(at=1_700_086_400.5), now=1_700_000_000.0)
    deep_but_fine = {"errors": [{"code": "E1", "extra": {"a": [1, 2]}}]}
    assert StatusEvent.from_body(_body(detail=deep_but_fine)).detail == deep_but_fine


def test_round_trip_keeps_every_field() -> None:
    for event in (_event(), _event(event=ACCEPTED, transport_message_id=None, application_ref=None),
                  _event(event=RETRY_SCHEDULED, reason="xta_9030", attempt=2, detail={"reason": "xta_9030"}),
                  _event(event=REPLY_RECEIVED, message_id="", event_id=event_id_for(REPLY_RECEIVED, "urn:x:1"))):
        again = StatusEvent.from_body(event.body())
        assert again == event
        assert again.event_id == event.event_id
        assert again.body() == event.body()


def test_event_id_is_stable_for_the_same_event_and_differs_otherwise() -> None:
    one = _event()
    assert one.event_id and _event().event_id == one.event_id  # the same event published twice
    assert StatusEvent.from_body(one.body()).event_id == one.event_id
    # the detail is not part of the identity: a re-published event with a richer detail is the same event
    assert _event(detail={}).event_id == one.event_id
    others = [_event(at=one.at + 0.001), _event(attempt=2), _event(attempt=None), _event(event=ACCEPTED),
              _event(transport_message_id="urn:de:xta:messageid:2"), _event(portal="portal.two"),
              _event(message_id="another")]
    ids = {e.event_id for e in others}
    assert len(ids) == len(others) and one.event_id not in ids
    # a given id wins (a reply fetched twice carries the id of its XTA message id)
    given = event_id_for(REPLY_RECEIVED, "urn:de:xta:messageid:9")
    assert _event(event_id=given).event_id == given == event_id_for(REPLY_RECEIVED, "urn:de:xta:messageid:9")
    assert event_id_for(REPLY_RECEIVED, "urn:de:xta:messageid:10") != given


def test_routing_key_lets_a_portal_bind_its_own_events() -> None:
    event = _event(portal="portal.one", event=DEAD_LETTERED, destination="azr:000100")
    assert event.routing_key == "portal_one.dead_lettered.azr:000100"
    assert event.exchange == STATUS_EXCHANGE
    props = event.properties()
    assert props.message_id == event.event_id  # consumers dedupe by it
    assert props.correlation_id == event.message_id
    assert props.type == "hub.status.dead_lettered" and props.delivery_mode == 2
    assert props.content_type == "application/json"


def test_precedence_orders_a_normal_life() -> None:
    life = [ACCEPTED, DELIVERING, RETRY_SCHEDULED, DEAD_LETTERED, DELIVERED, REPLAYED, TRANSPORT_REPORT,
            REPLY_RECEIVED]
    assert [PRECEDENCE[e] for e in life] == sorted(PRECEDENCE[e] for e in life)
    assert len({PRECEDENCE[e] for e in life}) == len(life)  # no ties among these
    assert PRECEDENCE[TRANSPORT_REPORT_TIMEOUT] == PRECEDENCE[TRANSPORT_REPORT]
    assert set(PRECEDENCE) == EVENTS and STATE_EVENTS < EVENTS
    assert TRANSPORT_REPORT not in STATE_EVENTS and REPLY_RECEIVED not in STATE_EVENTS
    # events with one time stamp, shuffled, sort back into the life's order
    same_time = [_event(event=e) for e in reversed(life)]
    assert [e.event for e in sorted(same_time, key=lambda e: (e.at, e.precedence))] == life
    assert _event(event=DELIVERED).precedence > _event(event=DELIVERING).precedence


def test_asyncapi_documents_every_event_field_and_the_precedence() -> None:
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
    message = doc["components"]["messages"]["StatusEvent"]
    assert message["x-precedence"] == PRECEDENCE
    assert set(message["x-state-events"]) == STATE_EVENTS
    assert set(message["x-events"]) == EVENTS == set(doc["channels"]["status"]["parameters"]["event"]["enum"])
    documented = message["payload"]["properties"]
    assert set(documented) == {f.name for f in dataclasses.fields(StatusEvent)}
    assert set(documented["event"]["enum"]) == EVENTS
    for name, spec in message["x-events"].items():
        assert set(spec["fields"]) <= set(documented), name
        assert isinstance(spec["detail"], dict), name
    assert doc["channels"]["status"]["bindings"]["amqp"]["exchange"]["name"] == STATUS_EXCHANGE
    assert doc["channels"]["replies"]["bindings"]["amqp"]["exchange"]["name"] == "hub.replies"
    assert doc["channels"]["repliesParked"]["address"] == "hub.replies.parked"
