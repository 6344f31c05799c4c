"""Whose trouble is it? The return channel's per-reply failure bookkeeping.

Trouble that is no single reply's (the endpoint unreachable, the broker not taking replies) ends
a poll cycle: trying the next ids would fail the same way. Anything else while handling one reply
(a nonsensical answer for that id, an XTA fault on it, a bug of ours on its content) is that
reply's: it stays in the mailbox and the cycle goes on, so one reply that never works cannot block
the replies behind it. ``FailureCounts`` remembers for how many polls in a row each reply failed,
so that a stuck one is reported once (ERROR) and counted in ``hub_mailbox_stuck_replies``.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from hub.errors import BrokerError, EndpointUnavailable, HubError, MalformedAnswer

log = logging.getLogger("hub.replies")

STUCK_AFTER = 5  # polls in a row a reply may fail before it is reported as stuck
MAX_TRACKED = 1000  # replies whose consecutive failures are counted (the least recent is forgotten)


def ends_cycle(error: BaseException) -> bool:
    """True for trouble that is no single reply's: the endpoint unreachable (refused, timeout, HTTP 5xx;
    not ``MalformedAnswer``) or the broker (not confirmed, nacked, no queue bound)."""
    if isinstance(error, MalformedAnswer):
        return False
    return isinstance(error, (EndpointUnavailable, BrokerError))


def where(exc: BaseException) -> str:
    """Where an exception the hub did not raise on purpose came from (" at file:line"; never its
    text, which may quote content)."""
    tb = exc.__traceback__
    if isinstance(exc, HubError) or tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


class FailureCounts:
    """Polls in a row each reply failed, by a bounded key (its AMQP message_id); bounded in size
    (the least recently failed is forgotten first). Not thread-safe: one per poller."""

    def __init__(self, portal: str, stuck_gauge: Gauge) -> None:
        self.portal = portal
        self._gauge = stuck_gauge.labels(portal)
        self._gauge.set(0)
        self._polls: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._polls)

    def __contains__(self, key: object) -> bool:
        return key in self._polls

    def failed(self, key: str, shown: str, reason: str) -> None:
        """One more poll in which this reply failed; says so once (ERROR) when it is stuck."""
        polls = self._polls.pop(key, 0) + 1
        self._polls[key] = polls  # (re)inserted last: the least recently failed are forgotten first
        while len(self._polls) > MAX_TRACKED:
            del self._polls[next(iter(self._polls))]
        if polls == STUCK_AFTER:
            log.error("mailbox %s: reply %s cannot be fetched for %d polls; it stays in the mailbox (last reason: %s)",
                      self.portal, shown, polls, reason)

    def succeeded(self, key: str) -> None:
        """The reply went through (or left the mailbox): its count starts anew."""
        self._polls.pop(key, None)

    def keep_only(self, keys: set[str]) -> None:
        """The whole mailbox was listed: forget the replies that are no longer in it."""
        self._polls = {k: n for k, n in self._polls.items() if k in keys}

    def publish(self) -> int:
        """Set ``hub_mailbox_stuck_replies`` for this portal; the number of stuck replies."""
        stuck = sum(1 for n in self._polls.values() if n >= STUCK_AFTER)
        self._gauge.set(stuck)
        return stuck
