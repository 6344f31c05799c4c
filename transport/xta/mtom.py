"""MTOM/XOP for SOAP 1.2 (W3C SOAP MTOM + XOP 1.0): binary content travels as MIME parts, not base64.

Sending: the caller renders its XML with ``xop:Include href="cid:..."`` where the base64 content
would go (``Attachments.include``) and hands envelope + attachments to ``package``. The result is a
``multipart/related; type="application/xop+xml"`` body that is *iterated*, chunk by chunk, straight
from the callers' buffers (``memoryview`` slices, or a spooled file for ciphertext): no base64 copy and
no joined copy of a 40 MB container is ever made. Its length is known up front (Content-Length).

Receiving: ``parse_multipart`` splits a body into the root part (the SOAP envelope, parsed by the
caller with the hardened parser) and the binary parts, as zero-copy ``memoryview`` slices of the
body. ``xop_cid``/``part_bytes`` resolve an ``xop:Include`` to its part; ``inline_xop`` replaces every
``xop:Include`` with the part's base64 text (XOP's "reconstituted" infoset), which is what schema
validation of an MTOM message checks.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import quote, unquote

from lxml import etree

from hub.errors import ProtocolError
from transport.xta.ns import SOAP12_CONTENT_TYPE, XOP, XOP_CONTENT_TYPE, q

XOP_INCLUDE = q(XOP, "Include")
CHUNK = 1 << 20  # bytes per chunk when streaming a part
MAX_PARTS = 1000
_CRLF = b"\r\n"


@dataclass
class Attachment:
    """One binary part: either in memory (``data``) or a readable stream of ``length`` bytes."""

    cid: str
    content_type: str
    length: int
    data: memoryview | None = field(default=None, repr=False)
    stream: BinaryIO | None = field(default=None, repr=False)

    def chunks(self) -> Iterator[memoryview | bytes]:
        if self.data is not None:
            for start in range(0, self.length, CHUNK):
                yield self.data[start:start + CHUNK]
            return
        assert self.stream is not None
        self.stream.seek(0)
        remaining = self.length
        while remaining > 0:
            chunk = self.stream.read(min(CHUNK, remaining))
            if not chunk:
                raise ProtocolError("attachment stream ended early")
            remaining -= len(chunk)
            yield chunk


class Attachments:
    """The binary parts of one MTOM message, in the order they are added."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex
        self._parts: list[Attachment] = []

    def _cid(self) -> str:
        return f"part{len(self._parts) + 1}.{self._prefix}@xoev-hub"

    def add(self, data: bytes | memoryview, content_type: str = "application/octet-stream") -> str:
        view = memoryview(data).cast("B")
        part = Attachment(self._cid(), content_type, len(view), data=view)
        self._parts.append(part)
        return part.cid

    def add_stream(self, stream: BinaryIO, length: int, content_type: str = "application/octet-stream") -> str:
        part = Attachment(self._cid(), content_type, length, stream=stream)
        self._parts.append(part)
        return part.cid

    def include(self, parent: etree._Element, data: bytes | memoryview | None = None, *,
                content_type: str = "application/octet-stream", stream: BinaryIO | None = None,
                length: int = 0) -> str:
        """Make ``parent``'s content an ``xop:Include`` of a new part (bytes or a stream)."""
        if stream is not None:
            cid = self.add_stream(stream, length, content_type)
        elif data is not None:
            cid = self.add(data, content_type)
        else:
            raise TypeError("include() needs data or a stream")
        parent.text = None
        include = etree.SubElement(parent, XOP_INCLUDE, nsmap={"xop": XOP})
        include.set("href", f"cid:{quote(cid, safe='@.')}")
        return cid

    def __iter__(self) -> Iterator[Attachment]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    @property
    def total_bytes(self) -> int:
        return sum(p.length for p in self._parts)

    def close(self) -> None:
        for part in self._parts:
            if part.stream is not None:
                part.stream.close()


class MultipartBody:
    """A multipart/related body that requests/urllib3 stream from ``__iter__`` with a known length."""

    def __init__(self, root: bytes, root_type: str, attachments: Attachments, boundary: str, start: str) -> None:
        self.boundary = boundary
        self.start = start
        self._root = root
        self._root_type = root_type
        self._attachments = list(attachments)
        self._length = sum(len(chunk) for chunk in self._frame(with_data=False)) + sum(
            p.length for p in self._attachments)

    def _frame(self, *, with_data: bool) -> Iterator[bytes | memoryview]:
        delimiter = f"--{self.boundary}".encode()
        yield delimiter + _CRLF
        yield (f"Content-Type: {self._root_type}\r\nContent-Transfer-Encoding: binary\r\n"
               f"Content-ID: <{self.start}>\r\n\r\n").encode()
        yield self._root
        for part in self._attachments:
            yield _CRLF + delimiter + _CRLF
            yield (f"Content-Type: {part.content_type}\r\nContent-Transfer-Encoding: binary\r\n"
                   f"Content-ID: <{part.cid}>\r\n\r\n").encode()
            if with_data:
                yield from part.chunks()
        yield _CRLF + delimiter + b"--" + _CRLF

    def __iter__(self) -> Iterator[bytes | memoryview]:
        return self._frame(with_data=True)

    def __len__(self) -> int:
        return self._length

    def to_bytes(self) -> bytes:
        """The whole body joined (tests and small messages only: this copies every part)."""
        return b"".join(bytes(chunk) for chunk in self)


def _soap_type(action: str | None) -> str:
    return f'{SOAP12_CONTENT_TYPE}; action="{action}"' if action else SOAP12_CONTENT_TYPE


def package(envelope: bytes, attachments: Attachments, action: str | None) -> tuple[str, MultipartBody]:
    """(Content-Type header, body) of an MTOM message: the envelope as root part, then the parts."""
    # 122 random bits: the chance that "--" + boundary occurs in 40 MB of content is ~2**-100, so the
    # parts are not scanned (that would cost a pass over every byte).
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    start = f"root.{uuid.uuid4().hex}@xoev-hub"
    start_info = _soap_type(action).replace('"', '\\"')
    root_type = f'{XOP_CONTENT_TYPE}; charset=UTF-8; type="{start_info}"'
    body = MultipartBody(envelope, root_type, attachments, boundary, start)
    content_type = (f'multipart/related; type="{XOP_CONTENT_TYPE}"; boundary="{boundary}"; '
                    f'start="<{start}>"; start-info="{start_info}"')
    return content_type, body


# ---------------------------------------------------------------------- receiving


def _params(header_value: str) -> tuple[str, dict[str, str]]:
    """Media type and parameters of a Content-Type value (quoted strings with \\-escapes allowed)."""
    media, _, rest = header_value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t;":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        name = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1
            params[name] = "".join(value)
        else:
            end = rest.find(";", i)
            end = n if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
    return media.strip().lower(), params


def is_multipart(content_type: str | None) -> bool:
    return content_type is not None and _params(content_type)[0] == "multipart/related"


@dataclass(frozen=True)
class MimeMessage:
    """A parsed multipart/related message: the root part and the other parts by Content-ID."""

    root: bytes
    root_content_type: str
    parts: Mapping[str, memoryview]


def _decode(headers: Mapping[str, str], content: memoryview) -> memoryview:
    encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
    if encoding in ("binary", "8bit", "7bit", ""):
        return content
    try:
        if encoding == "base64":
            return memoryview(binascii.a2b_base64(bytes(content)))
        if encoding == "quoted-printable":
            return memoryview(quopri.decodestring(bytes(content)))
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"MIME part is not valid {encoding}") from exc
    raise ProtocolError(f"unsupported Content-Transfer-Encoding {encoding!r}")


def parse_multipart(body: bytes, content_type: str, *, max_parts: int = MAX_PARTS) -> MimeMessage:
    """Split a multipart/related body; parts are views into ``body`` (no copies for binary parts)."""
    media, params = _params(content_type)
    boundary = params.get("boundary")
    if media != "multipart/related" or not boundary:
        raise ProtocolError("not a multipart/related message with a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    view = memoryview(body)
    pos = body.find(delimiter)
    if pos < 0:
        raise ProtocolError("multipart body without its boundary")
    parts: list[tuple[dict[str, str], memoryview]] = []
    while True:
        pos += len(delimiter)
        if body[pos:pos + 2] == b"--":
            break
        line_end = body.find(_CRLF, pos)
        head_end = body.find(_CRLF + _CRLF, line_end)
        if line_end < 0 or head_end < 0:
            raise ProtocolError("truncated MIME part headers")
        headers: dict[str, str] = {}
        for line in body[line_end + 2:head_end].decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        start = head_end + 4
        nxt = body.find(_CRLF + delimiter, start)
        if nxt < 0:
            raise ProtocolError("MIME part without a closing boundary (truncated body)")
        parts.append((headers, _decode(headers, view[start:nxt])))
        if len(parts) > max_parts:
            raise ProtocolError(f"more than {max_parts} MIME parts")
        pos = nxt + 2
    if not parts:
        raise ProtocolError("multipart body without parts")
    wanted = params.get("start", "").strip().strip("<>")
    by_id = {h.get("content-id", "").strip().strip("<>"): (h, c) for h, c in parts}
    root_headers, root = by_id.get(wanted, parts[0]) if wanted else parts[0]
    others = {cid: c for cid, (h, c) in by_id.items() if c is not root and cid}
    return MimeMessage(root=bytes(root), root_content_type=root_headers.get("content-type", ""), parts=others)


def xop_cid(el: etree._Element) -> str | None:
    """The Content-ID an element's ``xop:Include`` child refers to (None if it has none)."""
    for child in el:
        if child.tag == XOP_INCLUDE:
            href = child.get("href", "")
            if not href.startswith("cid:"):
                raise ProtocolError(f"xop:Include href is not a cid: URI ({href[:60]!r})")
            return unquote(href[4:])
    return None


def part_bytes(parts: Mapping[str, memoryview], cid: str) -> memoryview:
    try:
        return parts[cid]
    except KeyError:
        raise ProtocolError(f"xop:Include refers to a missing MIME part <{cid}>") from None


def inline_xop(root: etree._Element, parts: Mapping[str, memoryview]) -> int:
    """Replace every ``xop:Include`` by the base64 text of its part (in place); return the count."""
    includes = list(root.iter(XOP_INCLUDE))
    for include in includes:
        parent = include.getparent()
        if parent is None:  # the document itself is an xop:Include
            raise ProtocolError("xop:Include without a parent element")
        cid = xop_cid(parent)
        parent.remove(include)
        parent.text = base64.b64encode(part_bytes(parts, cid or "")).decode("ascii")
    return len(includes)
