"""What travels inside an XTA ContentContainer: one message and zero or more attachments.

The wire layer, the security layer and the hub all speak this model; the bytes of every part are
carried unchanged end to end (the receiver gets exactly what the portal published).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContentPart:
    """One opaque part (the XÖV message or an attachment) with its MIME metadata. ``data`` is bytes,
    or a zero-copy memoryview slice of an AMQP body (envelope version 2): call ``bytes()`` where an
    API needs bytes."""

    data: bytes | memoryview = field(repr=False)
    content_type: str
    filename: str | None = None
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Content:
    """The content of one delivery: ``message`` first, then ``attachments`` in order."""

    message: ContentPart
    attachments: tuple[ContentPart, ...] = ()

    @property
    def parts(self) -> tuple[ContentPart, ...]:
        return (self.message, *self.attachments)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)
