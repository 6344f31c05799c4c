"""State of the XTA simulator: issued MessageIDs, received messages, their transport state (report,
mailbox, fetch), and call/fault counters.

Thread-safe (the simulator serves each connection in its own thread). Received messages live in
memory and, if a directory is given, also on disk (one folder per message: ``message.json`` plus one
``part-N.bin`` per part, and ``encrypted-data.xml`` + ``cipher.bin`` for encrypted content, written
before the sender gets its answer). Summaries never hold payload bytes; only the part endpoint hands
them out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transport.content import ContentPart
from transport.xta.metadata import MessageMetaData

ACCEPTED, UNKNOWN, USED, IN_FLIGHT = "accepted", "unknown", "used", "in_flight"


@dataclass(frozen=True)
class StoredPart(ContentPart):
    """One received part (message, attachment, or the still-encrypted container)."""

    def summary(self) -> dict[str, Any]:
        return {"filename": self.filename, "content_type": self.content_type, "size": self.size,
                "sha256": self.sha256, "description": self.description}


@dataclass(frozen=True)
class WireContent:
    """The content as the reader gets it back from its mailbox (what the author sent).

    Plain: ``parts`` as received (signature part included). Encrypted: ``encrypted_template`` is the
    xenc:EncryptedData with an empty CipherValue and ``cipher`` the raw ``IV || ciphertext || tag``.
    """

    parts: tuple[StoredPart, ...] = ()
    encrypted_template: bytes | None = field(default=None, repr=False)
    cipher: bytes | None = field(default=None, repr=False)

    @property
    def encrypted(self) -> bool:
        return self.encrypted_template is not None


@dataclass(frozen=True)
class StoredMessage:
    """What the simulated XTA server accepted for one reader, with the verification outcome."""

    message_id: str
    reader: str
    author: str
    service: str
    message_type: str
    business_scenario: str
    parts: tuple[StoredPart, ...]
    test: bool = False
    encrypted: bool = False  # True: stored as received (no key for the reader), not decrypted
    verified: bool = False  # True: content signature checked against the trusted signers
    signer: str | None = None  # subject (RFC 4514) of the verified signer
    received_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    metadata: MessageMetaData | None = field(default=None, repr=False, compare=False)
    wire: WireContent | None = field(default=None, repr=False, compare=False)
    mtom: bool = False  # arrived as MTOM

    def summary(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id, "reader": self.reader, "author": self.author,
            "service": self.service, "message_type": self.message_type,
            "business_scenario": self.business_scenario, "test": self.test,
            "encrypted": self.encrypted, "verified": self.verified, "signer": self.signer,
            "received_at": self.received_at, "mtom": self.mtom, "parts": [p.summary() for p in self.parts],
        }


@dataclass
class TransportState:
    """The transport order's progress, from which the simulator derives the TransportReport."""

    accepted_at: float  # epoch seconds
    ready_at: float  # when the transport is finished (report leaves status 0)
    final_status: int  # 1 green, 2 yellow, 3 red, once ready
    reason: str = ""  # why yellow/red
    cancelled_at: float | None = None
    fetched_at: float | None = None
    handed_out: set[str] = field(default_factory=set)  # MsgBox request ids it was handed out under


class MessageIdRegistry:
    """MessageIDs issued by createMessageId and their use by sendMessage.

    An ID is reserved while its sendMessage is processed and marked used only once the message is
    accepted: a failed attempt leaves it usable for the retry, a re-send after success gets 9024.
    """

    def __init__(self, server_identity: str) -> None:
        self._prefix = f"urn:de:xta:messageid:{server_identity}:"
        self._lock = threading.Lock()
        self._owner: dict[str, str] = {}
        self._used: set[str] = set()
        self._in_flight: set[str] = set()

    def create(self, author: str) -> str:
        message_id = f"{self._prefix}{uuid.uuid4()}"
        with self._lock:
            self._owner[message_id] = author
        return message_id

    def owner(self, message_id: str) -> str | None:
        with self._lock:
            return self._owner.get(message_id)

    def reserve(self, message_id: str, author: str) -> str | None:
        """None if ``author`` may send under ``message_id`` now, else UNKNOWN, USED or IN_FLIGHT."""
        with self._lock:
            owner = self._owner.get(message_id)
            if owner is None or (owner and owner != author):  # "" = issued without Author header
                return UNKNOWN
            if message_id in self._used:
                return USED
            if message_id in self._in_flight:
                return IN_FLIGHT
            self._in_flight.add(message_id)
            return None

    def commit(self, message_id: str) -> None:
        with self._lock:
            self._in_flight.discard(message_id)
            self._used.add(message_id)

    def release(self, message_id: str) -> None:
        with self._lock:
            self._in_flight.discard(message_id)

    def reset(self) -> None:
        with self._lock:
            self._owner.clear()
            self._used.clear()
            self._in_flight.clear()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _dirname(value: str) -> str:
    """A file-system-safe, collision-free folder name for a reader id or message id."""
    return f"{_UNSAFE.sub('_', value)[:80]}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"


class MessageStore:
    """Received messages in arrival order, their transport state; optionally mirrored to ``directory``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._messages: dict[str, StoredMessage] = {}
        self._states: dict[str, TransportState] = {}
        self._calls: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def add(self, message: StoredMessage, state: TransportState | None = None) -> None:
        """Keep ``message``; on disk first (if configured) so an accepted message is never only in RAM."""
        if self.directory is not None:
            self._persist(message)
        now = time.time()
        with self._lock:
            self._messages[message.message_id] = message
            self._states[message.message_id] = state or TransportState(now, now, 1)

    def _persist(self, message: StoredMessage) -> None:
        assert self.directory is not None
        reader_dir = self.directory / _dirname(message.reader)
        reader_dir.mkdir(parents=True, exist_ok=True)
        final = reader_dir / _dirname(message.message_id)
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=reader_dir))
        for i, part in enumerate(message.parts):
            (tmp / f"part-{i}.bin").write_bytes(part.data)
        wire = message.wire
        if wire is not None and wire.encrypted:
            (tmp / "encrypted-data.xml").write_bytes(wire.encrypted_template or b"")
            (tmp / "cipher.bin").write_bytes(wire.cipher or b"")
        (tmp / "message.json").write_text(json.dumps(message.summary(), indent=2, ensure_ascii=False),
                                          encoding="utf-8")
        os.replace(tmp, final)

    def get(self, message_id: str) -> StoredMessage | None:
        with self._lock:
            return self._messages.get(message_id)

    def state(self, message_id: str) -> TransportState | None:
        """A copy of the message's transport state (None: unknown MessageID)."""
        with self._lock:
            state = self._states.get(message_id)
            return replace(state, handed_out=set(state.handed_out)) if state is not None else None

    def update_state(self, message_id: str, **changes: Any) -> None:
        with self._lock:
            state = self._states.get(message_id)
            if state is not None:
                for name, value in changes.items():
                    setattr(state, name, value)

    def hand_out(self, message_id: str, request_id: str) -> None:
        with self._lock:
            state = self._states.get(message_id)
            if state is not None:
                state.handed_out.add(request_id)

    def messages(self, reader: str | None = None) -> list[StoredMessage]:
        with self._lock:
            return [m for m in self._messages.values() if reader is None or m.reader == reader]

    def count_call(self, operation: str) -> None:
        with self._lock:
            self._calls[operation] += 1

    def count_fault(self, code: str) -> None:
        with self._lock:
            self._faults[code] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            readers = Counter(m.reader for m in self._messages.values())
            fetched = sum(1 for s in self._states.values() if s.fetched_at is not None)
            return {"total": len(self._messages), "readers": dict(readers), "calls": dict(self._calls),
                    "faults": dict(self._faults), "fetched": fetched}

    def reset(self) -> None:
        """Forget everything in memory (files on disk are kept as a record)."""
        with self._lock:
            self._messages.clear()
            self._states.clear()
            self._calls.clear()
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)
