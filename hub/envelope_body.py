"""Reading an envelope's JSON body without copying its base64.

``json.loads`` of a 40 MB body makes a 40 MB str of the whole body plus one str per base64 string,
and ``base64.b64decode`` another bytes copy of each: ~3.5x the content in memory before the first
check could refuse it. Here every long JSON string is cut out of the body first and replaced by a
marker; only the small rest (names, types, sizes, hashes) goes through ``json.loads``, and a
part's base64 is decoded straight from the body's buffer (no copy) once its declared size has been
checked against the limit and against the length of its base64.

The body must be UTF-8 JSON (the contract says so; a leading BOM is skipped, RFC 8259 8.1): in
UTF-8 the bytes of '"' and '\\' occur only as those characters, so string literals can be found
without decoding. base64 needs no JSON escapes, but publishers write them: '\\/' (PHP) is decoded
straight from the body window by window; a ``data`` with other escapes ('\\u002B' from .NET's
System.Text.Json, '\\u003d' from Gson) is unescaped by ``json.loads`` of that one literal (a str
of its size, after the size checks) and then decoded strictly. A long string anywhere but in a
part's ``data``, ``filename``, ``content_type`` or ``sha256`` is refused rather than decoded.
"""

from __future__ import annotations

import binascii
import json
import re
import secrets
from typing import Any

from hub.errors import EnvelopeError

# Strings at least this long are cut out of the body; shorter ones stay in the JSON rest.
CUT_AT = 1024
# At most this much JSON besides the cut strings (1000+ parts); bounds what json.loads builds.
MAX_REST_BYTES = 256 * 1024
# Escapes visited one by one in Python per body (escaped quotes, long backslash runs); the
# escapes of ordinary strings are counted at C speed and cost nothing against it.
MAX_ESCAPES = 100_000
# base64 with '\/' escapes is decoded in windows of this many bytes.
_WINDOW = 1024 * 1024
# A run of this many backslashes before a quote is walked escape by escape (see _string_end).
_RUN_WINDOW = 64
_UTF8_BOM = b"\xef\xbb\xbf"

# The next quote, or a backslash escaping anything but '/': '\/' pairs are skipped at C speed.
_QUOTE_OR_ESCAPE = re.compile(rb'"|\\[^/]', re.DOTALL)


class CutStrings:
    """The long strings cut out of one body; each is handed out at most once."""

    def __init__(self, body: bytes, nonce: str) -> None:
        self._body = body
        self._nonce = nonce
        self._spans: dict[str, tuple[int, int, int]] = {}  # marker -> (start, end, non-slash escapes)
        self._taken: set[str] = set()

    def add(self, start: int, end: int, escapes: int) -> bytes:
        """Record ``body[start:end]`` (inside the quotes); return the marker literal for the rest."""
        marker = f"\x00{self._nonce}:{len(self._spans)}"
        self._spans[marker] = (start, end, escapes)
        return json.dumps(marker).encode("ascii")

    def is_cut(self, value: object) -> bool:
        return isinstance(value, str) and value in self._spans

    def _take(self, marker: str, where: str) -> tuple[int, int, int]:
        if marker in self._taken:
            raise EnvelopeError(f"body.{where}: refers to data used elsewhere")
        self._taken.add(marker)
        return self._spans[marker]

    def text(self, value: object, where: str) -> object:
        """A short field's value; a cut string is decoded from its literal (bounded by the body)."""
        if not self.is_cut(value):
            return value
        start, end, _ = self._take(str(value), where)
        try:
            return json.loads(self._body[start - 1:end + 1])
        except (ValueError, UnicodeDecodeError):
            raise EnvelopeError(f"body.{where}: not a valid JSON string") from None

    def claim_base64(self, value: str, where: str) -> int:
        """Claim the cut base64 ``value`` for one part; the bytes it decodes to, from its length
        alone (nothing decoded yet)."""
        start, end, escapes = self._take(value, where)
        if escapes:  # e.g. .NET's '\u002B', Gson's '\u003d': unescaped once, then dropped
            text = self._unescaped(start, end, where)
            length, padding = len(text), text.endswith("=") + text.endswith("==")
        else:
            length = end - start - self._body.count(b"\\/", start, end)
            padding = (self._body[end - 1] == 0x3D) + (self._body[end - 2] == 0x3D)
        if length % 4:
            raise EnvelopeError(f"body.{where}: data is not valid base64")
        return length // 4 * 3 - padding

    def decode_base64(self, value: str, where: str) -> bytes:
        """Decode a claimed base64 string straight from the body (strict: no whitespace, no junk)."""
        start, end, escapes = self._spans[value]
        try:
            if escapes:  # one str of this part's base64 (bounded by the body limit), decoded strictly
                return binascii.a2b_base64(self._unescaped(start, end, where), strict_mode=True)
            if self._body.find(b"\\", start, end) < 0:
                return binascii.a2b_base64(memoryview(self._body)[start:end], strict_mode=True)
            return _decode_slash_escaped(self._body, start, end)
        except (binascii.Error, ValueError):
            raise EnvelopeError(f"body.{where}: data is not valid base64") from None

    def _unescaped(self, start: int, end: int, where: str) -> str:
        """The JSON string literal around ``body[start:end]``, unescaped (rare: escaped base64)."""
        try:
            text = json.loads(self._body[start - 1:end + 1])
        except (ValueError, UnicodeDecodeError):
            raise EnvelopeError(f"body.{where}: data is not valid base64") from None
        if not isinstance(text, str):
            raise EnvelopeError(f"body.{where}: data is not valid base64")
        return text

    def check_all_taken(self) -> None:
        """Every long string must have been one of the parts' fields: nothing unread is accepted."""
        left = len(self._spans) - len(self._taken)
        if left:
            raise EnvelopeError(f"body: {left} long string(s) outside the parts' fields")


def _decode_slash_escaped(body: bytes, start: int, end: int) -> bytes:
    """base64 with '\\/' escapes, decoded window by window (never a whole unescaped copy)."""
    chunks: list[bytes] = []
    carry = b""
    pos = start
    while pos < end:
        stop = min(pos + _WINDOW, end)
        if body[stop - 1] == 0x5C:  # never split an escape: every backslash here precedes a '/'
            stop += 1
        piece = carry + body[pos:stop].replace(b"\\/", b"/")
        usable = len(piece) - len(piece) % 4
        chunks.append(binascii.a2b_base64(piece[:usable], strict_mode=True))
        carry, pos = piece[usable:], stop
    if carry:
        raise ValueError("base64 length is not a multiple of 4")
    return b"".join(chunks)


def _string_end(body: bytes, start: int, budget: int) -> tuple[int, int, int]:
    """The closing quote of the string literal opened at ``start``; the backslashes in it that do
    not precede a '/' (0 exactly when every escape is '\\/'); the escapes visited one by one.

    A string without any backslash (plain base64, the normal case) is found by two memchr scans.
    With backslashes (PHP's '\\/', .NET's '\\u002B' for every '+') a quote ends the string when an
    even run of backslashes precedes it: only quotes are visited, escapes are counted at C speed.
    Escaped quotes, and a run of ``_RUN_WINDOW`` backslashes walked escape by escape, spend
    ``budget`` (``MAX_ESCAPES`` per body: bounded Python work).
    """
    quote = body.find(b'"', start + 1)
    if quote >= 0 and body.find(b"\\", start + 1, quote) < 0:
        return quote, 0, 0
    visited = 0
    while quote >= 0:
        before = body[max(start + 1, quote - _RUN_WINDOW):quote]
        run = len(before) - len(before.rstrip(b"\\"))
        if run >= _RUN_WINDOW:
            return _walk_string(body, start, budget)
        if run % 2 == 0:
            others = body.count(b"\\", start + 1, quote) - body.count(b"\\/", start + 1, quote)
            return quote, others, visited
        visited += 1  # an escaped quote
        if visited > budget:
            raise EnvelopeError(f"body: more than {MAX_ESCAPES} JSON escapes")
        quote = body.find(b'"', quote + 1)
    raise EnvelopeError("body is not valid JSON (unterminated string)")


def _walk_string(body: bytes, start: int, budget: int) -> tuple[int, int, int]:
    """``_string_end`` escape by escape, for a string with a long run of backslashes."""
    escapes = 0
    scan = start + 1
    while True:
        hit = _QUOTE_OR_ESCAPE.search(body, scan)
        if hit is None:
            raise EnvelopeError("body is not valid JSON (unterminated string)")
        if body[hit.start()] == 0x22:
            return hit.start(), escapes, escapes
        escapes += 1
        if escapes > budget:
            raise EnvelopeError(f"body: more than {MAX_ESCAPES} JSON escapes")
        scan = hit.end()


def read_body(body: bytes) -> tuple[Any, CutStrings]:
    """The JSON document of ``body`` with its long strings replaced by markers, and those strings."""
    bom = len(_UTF8_BOM) if body.startswith(_UTF8_BOM) else 0  # RFC 8259 8.1: may be ignored
    if json.detect_encoding(body[bom:bom + 4]) != "utf-8":
        raise EnvelopeError("body is not valid JSON (UTF-8 required)")
    strings = CutStrings(body, secrets.token_hex(8))
    rest: list[bytes] = []
    rest_size = 0  # bytes in ``rest``
    budget = MAX_ESCAPES  # escapes left to visit one by one
    copied_to = bom  # body[:copied_to] is in ``rest`` already (or is the BOM)
    pos = bom
    while True:
        start = body.find(b'"', pos)
        if rest_size + (len(body) if start < 0 else start) - copied_to > MAX_REST_BYTES:
            raise EnvelopeError(f"body: more than {MAX_REST_BYTES} bytes of JSON besides the parts' data")
        if start < 0:
            break
        end, escapes, visited = _string_end(body, start, budget)
        budget -= visited
        if end - start - 1 >= CUT_AT:
            marker = strings.add(start + 1, end, escapes)
            rest += (body[copied_to:start], marker)
            rest_size += start - copied_to + len(marker)
            copied_to = end + 1
        pos = end + 1
    rest.append(body[copied_to:])
    try:
        return json.loads(b"".join(rest)), strings
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise EnvelopeError("body is not valid JSON") from None
