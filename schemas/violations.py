"""Describe schema violations without leaking what the applicant wrote.

libxml2 quotes instance values in its messages ("Element 'familienname': [facet 'pattern'] The
value 'Müller' is not accepted ...", "No match found for key-sequence ['...']"). Those messages end
up in dead-letter headers and logs, and payloads hold personal data, so they are never passed on.
A description is rebuilt from parts that come from the schema or from libxml2 itself: the line,
the element and attribute *names* (taken only from the fixed ``Element '…', attribute '…':``
prefix), and a kind chosen from the error code. Unknown codes fall back to the code's name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol, cast

from lxml import etree

# The one place libxml2 puts names, always at the very start of a schema-validity message.
# Element/attribute names cannot contain a quote, so [^']* cannot run into a value.
_SUBJECT = re.compile(r"^Element '(?P<element>[^']*)'(?:, attribute '(?P<attribute>[^']*)')?: ")
# "The attribute 'x' is required but missing." names the attribute in the body instead.
_MISSING_ATTRIBUTE = re.compile(r"^The attribute '(?P<attribute>[^']*)' is required but missing")
# SCHEMAV_ELEMENT_CONTENT and friends cover several situations that differ only in fixed wording.
_FIXED_PHRASES: tuple[tuple[str, str], ...] = (  # most specific first
    ("This element is not expected", "unexpected element"),
    ("Missing child element(s)", "missing child element"),
    ("is required but missing", "required attribute missing"),
    ("Character content other than whitespace is not allowed", "text not allowed here"),
    ("Element content is not allowed", "child elements not allowed here"),
    ("does not match the fixed value constraint", "value differs from the fixed value"),
    ("No matching global declaration available", "no global declaration for this root element"),
    ("No matching global element declaration available", "no global declaration for this element"),
    ("is not allowed", "not allowed here"),
)
_KINDS: Mapping[str, str] = MappingProxyType({
    "SCHEMAV_CVC_PATTERN_VALID": "value does not match the pattern",
    "SCHEMAV_CVC_ENUMERATION_VALID": "value not in the enumeration",
    "SCHEMAV_CVC_LENGTH_VALID": "value has the wrong length",
    "SCHEMAV_CVC_MINLENGTH_VALID": "value too short",
    "SCHEMAV_CVC_MAXLENGTH_VALID": "value too long",
    "SCHEMAV_CVC_MININCLUSIVE_VALID": "value below the minimum",
    "SCHEMAV_CVC_MINEXCLUSIVE_VALID": "value below the minimum",
    "SCHEMAV_CVC_MAXINCLUSIVE_VALID": "value above the maximum",
    "SCHEMAV_CVC_MAXEXCLUSIVE_VALID": "value above the maximum",
    "SCHEMAV_CVC_TOTALDIGITS_VALID": "value has too many digits",
    "SCHEMAV_CVC_FRACTIONDIGITS_VALID": "value has too many fraction digits",
    "SCHEMAV_CVC_DATATYPE_VALID_1_2_1": "value not valid for its datatype",
    "SCHEMAV_CVC_DATATYPE_VALID_1_2_2": "value not valid for its datatype",
    "SCHEMAV_CVC_DATATYPE_VALID_1_2_3": "value not valid for its datatype",
    "SCHEMAV_CVC_FACET_VALID": "value violates a facet",
    "SCHEMAV_CVC_AU": "value differs from the fixed value",
    "SCHEMAV_CVC_IDC": "identity constraint (key/keyref/unique) violated",
    "SCHEMAV_CVC_ELT_1": "no global declaration for this element",
    "SCHEMAV_CVC_WILDCARD": "element not allowed by the wildcard",
    "SCHEMAV_CVC_COMPLEX_TYPE_4": "required attribute missing",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_1": "attribute not allowed",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_2": "attribute not allowed",
    "SCHEMAV_CVC_ELT_3_1": "xsi:nil not allowed",
    "SCHEMAV_CVC_ELT_3_2_1": "xsi:nil element has content",
    "SCHEMAV_CVC_ELT_4_1": "xsi:type not a valid type name",
    "SCHEMAV_CVC_ELT_4_2": "xsi:type does not resolve to a type",
    "SCHEMAV_CVC_ELT_4_3": "xsi:type not derived from the declared type",
    "SCHEMAV_CVC_ELT_5_2_2_1": "element with a fixed value has child elements",
    "SCHEMAV_CVC_ELT_5_2_2_2_1": "value differs from the fixed value",
    "SCHEMAV_CVC_ELT_5_2_2_2_2": "value differs from the fixed value",
})


class LogEntry(Protocol):
    """The parts of an lxml ``_LogEntry`` used here (a protocol, so tests can build their own)."""

    @property
    def line(self) -> int: ...
    @property
    def message(self) -> str: ...
    @property
    def type_name(self) -> str: ...


def describe_violation(entry: LogEntry) -> str:
    """One error as ``line N: element 'x', attribute 'y': kind``: names and kind, never values."""
    message = entry.message or ""
    subject = _SUBJECT.match(message)
    where = ""
    if subject is not None:
        where = f"element '{_local(subject['element'])}'"
        attribute = subject["attribute"]
        if attribute is None:
            missing = _MISSING_ATTRIBUTE.match(message[subject.end() :])
            attribute = missing["attribute"] if missing else None
        if attribute is not None:
            where += f", attribute '{_local(attribute)}'"
    kind = _kind(entry)
    parts = [f"line {entry.line}"] + ([where] if where else []) + [kind]
    return ": ".join(parts)


def summarize_violations(entries: Iterable[LogEntry], *, limit: int = 3) -> str:
    """The first ``limit`` described errors plus the total count, for headers and logs."""
    described = [describe_violation(entry) for entry in entries]
    if not described:
        return "0 errors"
    shown = "; ".join(described[:limit])
    more = f"; and {len(described) - limit} more" if len(described) > limit else ""
    noun = "error" if len(described) == 1 else "errors"
    return f"{len(described)} {noun}: {shown}{more}"


def schema_errors(log: etree._ErrorLog | Iterable[etree._LogEntry]) -> Sequence[etree._LogEntry]:
    """The entries of a validation log that make a document invalid (warnings dropped)."""
    entries = cast("Iterable[etree._LogEntry]", log)  # lxml-stubs 0.5.1 declare _ErrorLog empty; it iterates these
    return [entry for entry in entries if entry.level >= etree.ErrorLevels.ERROR]


def _kind(entry: LogEntry) -> str:
    type_name = entry.type_name or ""
    if type_name in _KINDS:
        return _KINDS[type_name]
    body = _SUBJECT.sub("", entry.message or "", count=1)
    # Only look at the start of the body: later parts may quote the instance value.
    head = body[:80]
    for phrase, kind in _FIXED_PHRASES:
        if phrase in head:
            return kind
    return type_name.removeprefix("SCHEMAV_").lower() or "schema violation"


def _local(name: str) -> str:
    """``{namespace}local`` -> ``local``: shorter, and the namespace is clear from the type."""
    return name.rsplit("}", 1)[-1]
