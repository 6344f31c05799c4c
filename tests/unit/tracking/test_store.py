"""The tracking store on SQLite and on the real PostgreSQL: timelines, order independence, replies,
scopes and pages (tests/unit/tracking/lives.py has the lives and what the store must make of them)."""

from __future__ import annotations

import base64
import random
from dataclasses import asdict

import pytest

from hub.errors import InvalidQuery
from hub.status import InvalidStatusEvent, StatusEvent
from hub.tracking.model import STATES, ApplicationFilter, ApplicationSummary, Scope
from tests.unit.tracking.lives import LIVES, T0, Life, dead, delivered, replayed, reply, retried

OPERATOR = Scope.operator()
A, B = Scope("portal-a"), Scope("portal-b")


def _traces(store, ident, scope=OPERATOR) -> list[dict[str, object]]:
    return [t.as_dict() for t in store.trace(ident, scope)]


def _check(store, life: Life) -> None:
    assert _traces(store, life.message_id) == [life.expected()]


def _stored(store, scope=OPERATOR) -> dict[str, ApplicationSummary]:
    """Every stored summary (the rows that pages and counts read), by message id."""
    found: dict[str, ApplicationSummary] = {}
    cursor = None
    while True:
        page = store.applications(scope, limit=1000, cursor=cursor)
        found.update((s.message_id, s) for s in page.items)
        if (cursor := page.next_cursor) is None:
            return found


@pytest.mark.parametrize("kind", sorted(LIVES))
def test_timeline_and_summary_are_reconstructed_exactly(store, kind: str) -> None:
    life = LIVES[kind]("1")
    assert store.ingest(life.events) == len(life.events)
    _check(store, life)
    # every id the application carried finds it, and only it
    for ident in life.ids.values():
        assert _traces(store, ident) == [life.expected()], ident


def test_redelivered_events_change_nothing(store) -> None:
    lives = [make("1") for make in LIVES.values()]
    events = [e for life in lives for e in life.events]
    assert store.ingest(events) == len(events)
    before = (store.counts(OPERATOR), store.applications(OPERATOR).as_dict())
    assert store.ingest(events) == 0
    assert store.ingest(events[:3] + events[:3]) == 0
    assert (store.counts(OPERATOR), store.applications(OPERATOR).as_dict()) == before
    for life in lives:
        _check(store, life)
    extra = retried("extra")
    assert store.ingest(events[:5] + extra.events[:2] + events[5:7] + extra.events[:1]) == 2  # only the new


def test_fifty_shuffles_in_batches_give_the_same_timelines(store) -> None:
    """Every shuffle gets its own ids (the same lives, suffix = shuffle number), is ingested in
    random batches, some of them holding one event twice: arrival order must not matter."""
    all_lives: list[Life] = []
    for n in range(50):
        rnd = random.Random(n)
        lives = [make(f"s{n}") for make in LIVES.values()]
        all_lives += lives
        events = [e for life in lives for e in life.events]
        rnd.shuffle(events)
        events.insert(rnd.randrange(len(events)), rnd.choice(events))  # a duplicate inside one run
        cuts = sorted(rnd.sample(range(1, len(events)), rnd.randrange(0, 6)))
        total = 0
        for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
            total += store.ingest(events[start:end])
        assert total == len(events) - 1
    stored = _stored(store)
    for life in all_lives:
        _check(store, life)
        assert stored[life.message_id] == life.summary  # the row pages and counts read, not only trace
    counts = store.counts(OPERATOR)
    assert counts == {**dict.fromkeys(STATES, 0), "delivered": 150, "dead_lettered": 50}
    assert store.dead_letter_reasons(OPERATOR) == {"xta_9012": 50}


def test_reply_before_its_application_is_linked_once_the_application_arrives(store) -> None:
    life = delivered("r")
    answer = life.events[-1]
    assert answer.event == "reply_received" and answer.message_id == ""
    assert store.ingest([answer]) == 1
    # no phantom application
    assert store.trace(life.ids["reply_transport_id"], OPERATOR) == []
    assert store.applications(OPERATOR).items == ()
    assert store.counts(OPERATOR) == dict.fromkeys(STATES, 0)
    # the same reply from another portal's mailbox, same antragsidentifikation: never linked here
    foreign = reply("portal-b", life.summary.application_ref, "urn:xta:reply-foreign", T0 + 10)
    store.ingest([foreign])
    assert store.ingest(life.events[:-1]) == len(life.events) - 1
    _check(store, life)
    assert _traces(store, life.ids["reply_transport_id"]) == [life.expected()]
    assert store.trace("urn:xta:reply-foreign", OPERATOR) == []
    assert _stored(store) == {life.message_id: life.summary}
    # fetched twice by the poller: the same event id, still one reply
    assert store.ingest([answer]) == 0
    assert store.trace(life.message_id, OPERATOR)[0].summary.replies == 1


def test_reply_after_its_application_updates_the_stored_summary(store) -> None:
    life = delivered("late")
    store.ingest(life.events[:-1])
    assert _stored(store)[life.message_id].replies == 0
    store.ingest([life.events[-1]])
    assert _stored(store) == {life.message_id: life.summary}
    _check(store, life)


def test_reply_naming_its_message_id_before_the_application(store) -> None:
    life = retried("k")
    answer = reply("portal-a", "", "urn:xta:reply-k", T0 + 500, message_id=life.message_id)
    store.ingest([answer])
    assert store.trace(life.message_id, OPERATOR) == [] and store.applications(OPERATOR).items == ()
    store.ingest(life.events)
    trace = store.trace(life.message_id, OPERATOR)[0]
    assert [e.event for e in trace.timeline][-1] == "reply_received"
    assert trace.summary.replies == 1 and trace.summary.last_at == T0 + 500
    assert trace.summary.transport_message_id == life.ids["transport_message_id"]  # not the reply's id


def test_reply_shows_with_every_application_of_its_reference(store) -> None:
    """A corrected re-send gets a new message id but keeps the antragsidentifikation."""
    first, second = delivered("c1"), delivered("c2", t0=T0 + 100)
    second.events = [StatusEvent(**{**asdict(e), "application_ref": first.summary.application_ref, "event_id": ""})
                     if e.application_ref else e for e in second.events[:-1]]
    store.ingest(first.events + second.events)
    stored = _stored(store)
    for mid in (first.message_id, second.message_id):
        trace = store.trace(mid, OPERATOR)[0]
        assert trace.summary.replies == 1 and stored[mid].replies == 1 and trace.timeline[-1].transport_message_id == first.ids["reply_transport_id"]
    found = {t.summary.message_id for t in store.trace(first.ids["reply_transport_id"], OPERATOR)}
    assert found == {first.message_id, second.message_id}


def test_a_portal_sees_only_its_own_applications(store) -> None:
    mine = [delivered("a", "portal-a"), dead("a", "portal-a", reason="schema_violation")]
    theirs = [delivered("b", "portal-b"), replayed("b", "portal-b"), dead("b", "portal-b", reason="xta_9012")]
    # portal B reuses portal A's correlation id for one of its own applications
    clash = retried("clash", "portal-b")
    clash.events = [StatusEvent(**{**asdict(e), "correlation_id": mine[0].ids["correlation_id"], "event_id": ""})
                    for e in clash.events]
    store.ingest([e for life in [*mine, *theirs, clash] for e in life.events])
    stored = _stored(store)
    for life in [*mine, *theirs]:
        assert stored[life.message_id] == life.summary
    for life in theirs:
        for kind, ident in life.ids.items():
            assert store.trace(ident, A) == [], kind
            assert [t.summary.message_id for t in store.trace(ident, B)] == [life.message_id], kind
            assert [t.summary.message_id for t in store.trace(ident, OPERATOR)] == [life.message_id], kind
    shared = mine[0].ids["correlation_id"]
    assert [t.summary.message_id for t in store.trace(shared, A)] == [mine[0].message_id]
    assert [t.summary.message_id for t in store.trace(shared, B)] == [clash.message_id]
    assert len(store.trace(shared, OPERATOR)) == 2
    assert {s.message_id for s in store.applications(A).items} == {life.message_id for life in mine}
    assert store.applications(A, ApplicationFilter(portal="portal-b")).items == ()
    assert store.counts(A) == {**dict.fromkeys(STATES, 0), "delivered": 1, "dead_lettered": 1}
    assert store.counts(B) == {**dict.fromkeys(STATES, 0), "delivered": 3, "dead_lettered": 1}
    assert store.dead_letter_reasons(A) == {"schema_violation": 1}
    assert store.dead_letter_reasons(B) == {"xta_9012": 1}
    assert store.dead_letter_reasons(OPERATOR) == {"schema_violation": 1, "xta_9012": 1}


def test_events_of_another_portal_under_the_same_message_id_stay_out(store) -> None:
    life = delivered("own", "portal-a")
    store.ingest(life.events)
    spoof = StatusEvent(message_id=life.message_id, event="dead_lettered", portal="portal-b", destination="azr:000200",
                        at=T0 + 9999, reason="hijack", correlation_id="corr-spoof", transport_message_id="urn:xta:spoof")
    assert store.ingest([spoof]) == 1
    _check(store, life)
    for ident in (life.message_id, "corr-spoof", "urn:xta:spoof"):
        assert store.trace(ident, B) == []
    assert store.applications(B).items == () and store.counts(B) == dict.fromkeys(STATES, 0)
    assert _stored(store) == {life.message_id: life.summary}


def _walk(store, scope, flt, limit):
    seen, cursor, pages = [], None, 0
    while True:
        page = store.applications(scope, flt, limit=limit, cursor=cursor)
        seen += [(s.last_at, s.message_id) for s in page.items]
        pages += 1
        assert pages < 1000
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit
        cursor = page.next_cursor


def test_pages_walk_every_application_exactly_once(store) -> None:
    events = []
    for i in range(123):
        at = T0 + (i // 4) * 10.0  # four applications share each last_at: ties across page borders
        portal = "portal-a" if i % 5 else "portal-b"
        events.append(StatusEvent(message_id=f"m{i:03d}", event="delivered" if i % 3 else "dead_lettered",
                                  portal=portal, destination=f"azr:{i % 2:06d}", at=at, reason="xta_9012"))
    store.ingest(events)
    everything = sorted(((e.at, e.message_id) for e in events), reverse=True)
    for limit in (1, 7, 50, 123, 1000):
        assert _walk(store, OPERATOR, ApplicationFilter(), limit) == everything
    assert _walk(store, A, ApplicationFilter(), 6) == sorted(
        ((e.at, e.message_id) for e in events if e.portal == "portal-a"), reverse=True)
    flt = ApplicationFilter(destination="azr:000001", state="delivered", since=T0 + 50, until=T0 + 250)
    expected = sorted(((e.at, e.message_id) for e in events if e.destination == "azr:000001"
                       and e.event == "delivered" and T0 + 50 <= e.at < T0 + 250), reverse=True)
    assert expected and _walk(store, OPERATOR, flt, 4) == expected
    assert sum(store.counts(OPERATOR, flt).values()) == len(expected)


BAD_CURSORS = [
    "not a cursor!", "", "W10", base64.urlsafe_b64encode(b"[1,2,3]").decode(),
    base64.urlsafe_b64encode(b'["x","y"]').decode(), base64.urlsafe_b64encode(b'[1e999,"m"]').decode(),
    base64.urlsafe_b64encode(b'[1.0,"m\\u0000"]').decode(), base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    "\u00fc" * 10, "A" * 5000]


def test_a_malformed_cursor_is_a_clear_hub_error(store) -> None:
    store.ingest(delivered("1").events)
    for cursor in BAD_CURSORS:
        with pytest.raises(InvalidQuery, match="cursor"):
            store.applications(OPERATOR, cursor=cursor)


def test_bad_queries_are_refused_or_find_nothing(store) -> None:
    store.ingest(delivered("1").events)
    for limit in (0, -1, 1001):
        with pytest.raises(InvalidQuery, match="page size"):
            store.applications(OPERATOR, limit=limit)
    with pytest.raises(InvalidQuery, match="destination"):
        store.applications(OPERATOR, ApplicationFilter(destination="azr\x00"))
    with pytest.raises(InvalidQuery, match="since"):
        store.counts(OPERATOR, ApplicationFilter(since=float("nan")))
    for ident in ("", "mid\x00", "\ud800", "x" * 201):
        assert store.trace(ident, OPERATOR) == []


def test_an_event_the_store_cannot_keep_is_refused_for_good(store) -> None:
    good = delivered("1").events
    for bad in (StatusEvent(message_id="m\x00", event="accepted", portal="portal-a", destination="azr:000100"),
                StatusEvent(message_id="m", event="accepted", portal="portal-a", destination="\udcff")):
        with pytest.raises(InvalidStatusEvent):
            store.ingest([*good, bad])
    assert store.applications(OPERATOR).items == ()  # nothing of the refused batch was written
    assert store.ingest(good) == len(good)
