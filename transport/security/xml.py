"""The one hardened XML parse entry point of the hub.

Every XML document that crosses a trust boundary (portal payloads, SOAP responses, signatures,
encrypted containers) is parsed here, so the defences live in one place:

* no DTD at all: a DOCTYPE is refused (before parsing for ASCII-compatible encodings, and again
  on the parsed tree for everything else), so no entity can be declared, expanded or fetched;
* the parser never resolves entities, never loads a DTD and never touches the network;
* XInclude is never processed, and an element in an XInclude namespace is refused: the hub
  forwards payloads byte-identical, and a receiver that processes XInclude must not be handed one;
* byte size, nesting depth, attribute length and text length are bounded (``XmlLimits``);
* with ``max_nodes`` the parse is fed in slices and stops once the document has more elements,
  attributes, namespace declarations, comments and processing instructions than that: libxml2
  spends 100-200 bytes on each node however short it is in the input (``<b/>`` is 4 bytes), so a
  dense document would otherwise grow 30x its size in memory before any check could run.

``huge_tree`` is enabled by default because a base64 content element of a SOAP message can
legitimately hold ~55 MB of text; that only lifts libxml2's node size limits, entity expansion
stays impossible because there is no DTD. Payloads are parsed with ``payload_limits()``: huge_tree
too (an XÖV payload may embed a base64 document of more than libxml2's 10 MB text limit), with the
project's own bounds instead: the configured content limit for bytes and text, the node count
while parsing (memory), depth 256. The checks after parsing run as XPath inside libxml2, so they
cost microseconds.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any

from lxml import etree

from hub.errors import XmlRejected

__all__ = ["DEFAULT_LIMITS", "LIBXML2_TEXT_LIMIT", "XmlLimits", "parse_xml", "payload_limits", "serialize"]

_MIB = 1024 * 1024
# libxml2's hard depth ceiling with XML_PARSE_HUGE, and without it; deeper documents fail while parsing.
_LIBXML2_MAX_DEPTH = 2048
_LIBXML2_MAX_DEPTH_NOT_HUGE = 256
# libxml2's limit for one text node or one tag without XML_PARSE_HUGE.
LIBXML2_TEXT_LIMIT = 10_000_000
_MAX_ERROR_TEXT = 200
# Slices fed to the counting parse: at most ~16k nodes (~3 MB of tree) past the limit before it stops.
_FEED_SLICE = 64 * 1024
# The fewest bytes a counted node takes (an element "<a/>"; an attribute ' a=""' takes 5, a comment
# 7): a document of at most this many bytes per allowed node cannot exceed the node limit, so it is
# parsed in one call without the per-event counting loop (2-3 ms on a 50 KB application).
_MIN_NODE_BYTES = 4


@dataclass(frozen=True)
class XmlLimits:
    """Upper bounds for one document; defaults fit a 40 MB XTA container in base64 plus SOAP."""

    max_bytes: int = 60 * _MIB
    max_depth: int = 256
    max_attribute_length: int = 64 * 1024
    # A single text node may hold a whole base64 container (40 MB raw -> ~54 MB of text).
    max_text_length: int = 60 * _MIB
    # Elements + attributes + namespace declarations + comments + PIs; None: not counted.
    max_nodes: int | None = None
    huge_tree: bool = True

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_attribute_length", "max_text_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"XmlLimits.{name} must be positive")
        if self.max_nodes is not None and self.max_nodes < 1:
            raise ValueError("XmlLimits.max_nodes must be positive")


DEFAULT_LIMITS = XmlLimits()


def payload_limits(max_bytes: int, max_nodes: int) -> XmlLimits:
    """Limits for a portal's XML message: at most ``max_bytes`` (also per text node: XÖV payloads
    embed attachments as base64 elements, 7.5 MB raw are already 10 MB of text), nodes counted.
    huge_tree is on, so libxml2's 10 MB / depth-256 caps do not refuse a valid payload; memory is
    bounded by the byte size and the node count, depth by the project's own check (256)."""
    return XmlLimits(max_bytes=max_bytes, max_text_length=max_bytes, max_nodes=max_nodes, huge_tree=True)

# Prolog items that may precede a DOCTYPE: whitespace, XML declaration / PIs, comments.
_WS = re.compile(rb"[ \t\r\n]*")
_UTF8_BOM = codecs.BOM_UTF8


def _parser_options(huge_tree: bool) -> dict[str, Any]:
    """The options of every parser made here (a fresh parser per call: lxml parsers are not meant
    to be shared between threads)."""
    return {
        "resolve_entities": False,
        "no_network": True,
        "load_dtd": False,
        "dtd_validation": False,
        "attribute_defaults": False,
        "huge_tree": huge_tree,
        "remove_blank_text": False,
        "recover": False,
        # Do NOT pass collect_ids=False: with lxml 6.1 / libxml2 2.14 it makes libxml2 load the
        # external DTD subset (file:// included) despite load_dtd=False (regression-tested).
    }


def _parse_counted(data: bytes, limits: XmlLimits, max_nodes: int) -> etree._Element:
    """Parse in slices, counting nodes as they start; stop as soon as there are too many, so the
    tree never holds much more than ``max_nodes`` nodes, however dense the input."""
    parser = etree.XMLPullParser(events=("start", "start-ns", "comment", "pi"),
                                 **_parser_options(limits.huge_tree))
    nodes = 0
    for offset in range(0, len(data), _FEED_SLICE):
        parser.feed(data[offset:offset + _FEED_SLICE])
        element: etree._Element | None = None
        for event, item in parser.read_events():
            if event == "start" and isinstance(item, etree._Element):
                element = item
                nodes += 1 + len(item.attrib)
            else:  # a namespace declaration, comment or processing instruction
                nodes += 1
        if nodes > max_nodes:
            where = f" (line {element.sourceline})" if element is not None and element.sourceline else ""
            raise XmlRejected(f"more than {max_nodes} elements, attributes, namespace declarations, "
                              f"comments and processing instructions{where}")
    root: etree._Element = parser.close()
    return root


def _doctype_kind(data: bytes) -> str:
    """What a refused DOCTYPE tried (for the error message only; the DOCTYPE is refused anyway)."""
    head = data[:8192]
    subset = head.find(b"[")
    outside = head if subset < 0 else head[:subset]
    kinds = []
    if b"SYSTEM" in outside or b"PUBLIC" in outside:
        kinds.append("external DTD")
    inside = b"" if subset < 0 else head[subset:]
    if b"<!ENTITY %" in inside:
        kinds.append("parameter entities")
    elif b"<!ENTITY" in inside:
        external = b"SYSTEM" in inside or b"PUBLIC" in inside
        kinds.append("external entities" if external else "entity declarations")
    return f"DOCTYPE not allowed ({', '.join(kinds)})" if kinds else "DOCTYPE not allowed"


def _prolog_has_doctype(data: bytes) -> bool:
    """Spot a DOCTYPE in the prolog without parsing it (ASCII-compatible encodings only)."""
    pos = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    end = len(data)
    while pos < end:
        pos = _WS.match(data, pos).end()  # type: ignore[union-attr]
        if data.startswith(b"<?", pos):
            close = data.find(b"?>", pos + 2)
        elif data.startswith(b"<!--", pos):
            close = data.find(b"-->", pos + 4)
        else:
            return data.startswith(b"<!DOCTYPE", pos)
        if close < 0:
            return False  # unterminated: the parser reports it
        pos = close + 2 if data[close] == 0x3F else close + 3  # after "?>" or "-->"
    return False


def _syntax_message(exc: etree.XMLSyntaxError, huge_tree: bool) -> str:
    """First line of libxml2's message only: later lines may quote raw input bytes."""
    lines = (exc.msg or str(exc)).splitlines()
    text = lines[0][:_MAX_ERROR_TEXT] if lines else "syntax error"
    line, column = exc.position if exc.position else (exc.lineno, 0)
    if "Invalid bytes in character encoding" in text or "not proper UTF-8" in text:
        return f"invalid UTF-8 (line {line}, column {column})"
    if "Excessive depth" in text:
        return f"nesting depth exceeds {_LIBXML2_MAX_DEPTH if huge_tree else _LIBXML2_MAX_DEPTH_NOT_HUGE}"
    if "Text node too long" in text:
        return f"text longer than {LIBXML2_TEXT_LIMIT} bytes (line {line}, column {column})"
    if "Buffer size limit exceeded" in text:
        return f"a tag or attribute value longer than {LIBXML2_TEXT_LIMIT} bytes (line {line}, column {column})"
    return f"not well-formed: {text}"


def _depth_query(depth: int) -> str:
    return "boolean(" + "/*" * depth + ")"


def _actual_depth(root: etree._Element, above: int) -> int:
    """Deepest element level (root = 1), known to be > ``above``; only used on rejection."""
    lo, hi = above + 1, _LIBXML2_MAX_DEPTH  # lo exists, find the largest existing level
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if root.xpath(_depth_query(mid)):
            lo = mid
        else:
            hi = mid - 1
    return lo


_XINCLUDE = (
    "(//*[namespace-uri()='http://www.w3.org/2001/XInclude' "
    "or namespace-uri()='http://www.w3.org/2003/XInclude'])[1]"
)


def _first_hit(root: etree._Element, query: str) -> object | None:
    """The first item of a node-set query (None when empty): attributes and text nodes come back as
    smart strings that know their name and parent."""
    hits = root.xpath(query)
    return hits[0] if isinstance(hits, list) and hits else None


def _check_limits(root: etree._Element, size: int, limits: XmlLimits) -> None:
    if limits.max_depth < _LIBXML2_MAX_DEPTH and root.xpath(_depth_query(limits.max_depth + 1)):
        depth = _actual_depth(root, limits.max_depth)
        raise XmlRejected(f"nesting depth {depth} exceeds {limits.max_depth}")
    if limits.max_attribute_length < size:
        hit = _first_hit(root, f"(//@*[string-length() > {limits.max_attribute_length}])[1]")
        if hit is not None:
            attrname = hit.attrname if isinstance(hit, etree._ElementUnicodeResult) else None
            name = etree.QName(attrname).localname if attrname else "?"
            raise XmlRejected(
                f"attribute {name} longer than {limits.max_attribute_length} characters"
            )
    if limits.max_text_length < size:
        hit = _first_hit(root, f"(//text()[string-length() > {limits.max_text_length}])[1]")
        if hit is not None:
            parent = hit.getparent() if isinstance(hit, etree._ElementUnicodeResult) else None
            name = etree.QName(parent).localname if parent is not None else "?"
            raise XmlRejected(
                f"text in element {name} longer than {limits.max_text_length} characters"
            )


def parse_xml(data: bytes | bytearray | memoryview, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse untrusted XML into an lxml tree, or raise ``XmlRejected`` saying why."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("parse_xml expects bytes")
    data = bytes(data)
    size = len(data)
    if size == 0:
        raise XmlRejected("empty document")
    if size > limits.max_bytes:
        raise XmlRejected(f"document of {size} bytes exceeds {limits.max_bytes}")
    if _prolog_has_doctype(data):
        raise XmlRejected(_doctype_kind(data))
    try:
        if limits.max_nodes is not None and size > _MIN_NODE_BYTES * limits.max_nodes:
            root = _parse_counted(data, limits, limits.max_nodes)
        else:
            root = etree.fromstring(data, etree.XMLParser(**_parser_options(limits.huge_tree)))
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(_syntax_message(exc, limits.huge_tree)) from None
    except (ValueError, etree.LxmlError) as exc:  # e.g. unknown encoding declaration
        raise XmlRejected(f"not well-formed: {type(exc).__name__}") from None
    if root is None:
        raise XmlRejected("no root element")
    # lxml-stubs 0.5.1 declare too little of DocInfo (no doctype, no system_url)
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.system_url:
        raise XmlRejected("DOCTYPE not allowed")
    _check_limits(root, size, limits)
    if root.xpath(_XINCLUDE):
        raise XmlRejected("XInclude element not allowed")
    return root


def serialize(el: etree._Element, *, xml_declaration: bool = True) -> bytes:
    """UTF-8 bytes of an element (with XML declaration by default), no pretty-printing."""
    return etree.tostring(el, encoding="UTF-8", xml_declaration=xml_declaration)
