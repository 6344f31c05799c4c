"""Fictional sample applications (OZG.Antrag.130101), attachments, and the authorities' replies
(OZG.RueckkanalFrage.130102, OZG.Statusmeldung.130104, OZG.Terminmitteilung.130105) for the demo
and the tests.

Everything is derived from ``seed``, so a test, a benchmark and the demo portal can produce the
same message again (same bytes, same nachrichtenUUID) and a re-send is recognisable as such. The
people are made up (names from a short list of obvious placeholder names); the codes for
Aufenthaltszweck and Antragsgrund come from the real XAusländer code lists. The XML is built with
lxml, so no value is ever concatenated into markup unescaped.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from datetime import date, datetime, timedelta, timezone

from lxml import etree

from schemas import XAUSLAENDER_NAMESPACE
from transport.xta.metadata import Party

PRODUCT = "xoev-hub Demo-Portal"
REPLY_PRODUCT = "xoev-hub Demo-Fachverfahren"  # replies come from the authority's specialised procedure
PRODUCT_VENDOR = "xoev-hub project"
PRODUCT_VERSION = "0.1.0"

# Code lists as published (../shared/standards/xauslaender-2611/codelists): (code, Wert).
AUFENTHALTSZWECK_LIST = ("urn:de:xauslaender:codelist:aufenthaltszweckart", "2")
AUFENTHALTSZWECKE = (
    ("01", "Ausbildung"),
    ("02", "Erwerbstätigkeit"),
    ("03", "Humanitäre, völkerrechtliche, politische Gründe"),
    ("04", "familiäre Gründe"),
    ("05", "besondere Aufenthaltsrechte"),
    ("99", "Sonstige"),
)
ANTRAGSGRUND_LIST = ("urn:xoev-de:xauslaender:codeliste:ozg.antragsgrund", "4")
ANTRAGSGRUENDE = (
    ("01", "Erstbeantragung"),
    ("02", "Verlängerung"),
    ("03", "Änderung von Nebenbestimmungen"),
    ("04", "Niederlassungserlaubnis"),
    ("05", "Beschäftigungserlaubnis"),
    ("06", "Beschäftigungsduldung"),
    ("07", "Ausbildungsduldung"),
)
NACHRICHTENTYP_LIST_URI = "urn:xoev-de:xauslaender:codeliste:nachrichtentyp"  # project placeholder
DVDV_PRAEFIX_LIST = ("urn:xoev-de:bund:bmi:bit:codeliste:dvdv.praefix", "51")
ABH_KENNUNG_LIST_URI = "urn:de:xauslaender:codelist:abhkennung"
STAAT_LIST_URI = "urn:de:bund:destatis:bevoelkerungsstatistik:schluessel:staat"
# Three-digit Destatis state keys as used in XÖV; sample values only, not checked against the list.
STAATEN = ("163", "436", "475", "479", "121")

FAMILIENNAMEN = ("Mustermann", "Musterfrau", "Beispielname", "Testperson", "Prüfling", "Probefall")
VORNAMEN = ("Max", "Erika", "Alex", "Kim Lou", "Jürgen-Test", "Ana Beispiel")

# Replies (the return channel): message type -> (root element, nachrichtentyp code).
OZG_RUECKKANALFRAGE = "OZG.RueckkanalFrage.130102"
OZG_STATUSMELDUNG = "OZG.Statusmeldung.130104"
OZG_TERMINMITTEILUNG = "OZG.Terminmitteilung.130105"
REPLY_ROOTS = {
    OZG_RUECKKANALFRAGE: ("ozg.rueckkanalFrage.130102", "130102"),
    OZG_STATUSMELDUNG: ("ozg.statusmeldung.130104", "130104"),
    OZG_TERMINMITTEILUNG: ("ozg.terminmitteilung.130105", "130105"),
}
FRAGEN = (
    "Bitte reichen Sie eine Kopie Ihres gültigen Reisepasses nach.",
    "Bitte senden Sie einen aktuellen Nachweis Ihrer Krankenversicherung.",
    "Bitte reichen Sie Ihren Arbeitsvertrag oder eine Einstellungszusage nach.",
    "Bitte teilen Sie uns Ihre aktuelle Meldeanschrift mit.",
)
# Placeholder code list of the project (schemas/xauslaender/ozg-statusmeldung-130104.xsd).
BEARBEITUNGSSTATUS_LIST = ("urn:xoev-hub:codeliste:ozg.bearbeitungsstatus", "1")
BEARBEITUNGSSTATUS = (
    ("01", "eingegangen", "Ihr Antrag ist bei der Ausländerbehörde eingegangen."),
    ("02", "in Bearbeitung", "Ihr Antrag wird bearbeitet."),
    ("03", "Unterlagen nachgefordert", "Es fehlen Unterlagen; Sie erhalten eine gesonderte Nachricht."),
    ("04", "entschieden", "Über Ihren Antrag wurde entschieden."),
    ("05", "abholbereit", "Ihr Dokument liegt zur Abholung bereit."),
    ("06", "abgeschlossen", "Das Verfahren ist abgeschlossen."),
)
TERMINORTE = (
    ("Ausländerbehörde Musterstadt, Servicebereich", "Musterstraße", "1", "12345", "Musterstadt", "Raum 1.23"),
    ("Bürgeramt Beispielhausen", "Beispielweg", "7a", "54321", "Beispielhausen", "Schalter 4"),
    ("Kreisverwaltung Testfeld", "Am Probeplatz", "12", "99999", "Testfeld", None),
)

_EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=timezone(timedelta(hours=1)))
_MIN_ATTACHMENT = 256


def make_ozg_application(
    *,
    reader: Party,
    author: Party,
    seed: int,
    attachment: bytes | None = None,
    test: bool = True,
) -> tuple[bytes, str]:
    """An OZG.Antrag.130101 document (UTF-8 XML bytes) and the nachrichtenUUID it carries.

    ``reader`` is the receiving Ausländerbehörde, ``author`` the portal; their identifiers are
    ``praefix:kennung``. With ``attachment`` the message gets an ``anlage`` describing it (name,
    MIME type, size, SHA-256) under the same file name ``make_attachment(seed)`` gives it.
    """
    rng = random.Random(f"ozg-antrag:{seed}")
    message_uuid = str(_uuid_for(seed))
    root = _message("ozg.antrag.130101", "130101", message_uuid, reader=reader, author=author, seed=seed, test=test)
    _sub(root, "antragsidentifikation", f"OZG-ANTRAG-{seed % 10**8:08d}")
    _sub(root, "rueckkanalVorhanden", "true")
    person = _sub(root, "antragsteller")
    _sub(person, "familienname", rng.choice(FAMILIENNAMEN))
    _sub(person, "vornamen", rng.choice(VORNAMEN))
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(45 * 365))
    _sub(person, "geburtsdatum", born.isoformat())
    _code(person, "staatsangehoerigkeit", rng.choice(STAATEN), STAAT_LIST_URI, None)
    zweck, zweck_name = rng.choice(AUFENTHALTSZWECKE)
    _code(root, "aufenthaltszweck", zweck, *AUFENTHALTSZWECK_LIST, name=zweck_name)
    grund, grund_name = rng.choice(ANTRAGSGRUENDE)
    _code(root, "antragsgrund", grund, *ANTRAGSGRUND_LIST, name=grund_name)

    if attachment is not None:
        anlage = _sub(root, "anlage")
        _sub(anlage, "dateiname", attachment_filename(seed))
        _sub(anlage, "mimeType", _sniff_content_type(attachment))
        _sub(anlage, "groesse", str(len(attachment)))
        _sub(anlage, "sha256", hashlib.sha256(attachment).hexdigest())

    document = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return document, message_uuid


def make_ozg_reply(
    message_type: str,
    *,
    reader: Party,
    author: Party,
    antragsidentifikation: str,
    seed: int,
    test: bool = True,
) -> tuple[bytes, str]:
    """An authority's reply to an application (UTF-8 XML bytes) and the nachrichtenUUID it carries.

    ``message_type`` is one of ``REPLY_ROOTS`` (question, status, appointment); ``reader`` is the
    portal, ``author`` the Ausländerbehörde; ``antragsidentifikation`` links the reply to the
    application. Same arguments, same bytes (the UUID also depends on the message type).
    """
    try:
        root_name, number = REPLY_ROOTS[message_type]
    except KeyError:
        raise ValueError(f"no sample reply for message type {message_type!r} "
                         f"(known: {', '.join(REPLY_ROOTS)})") from None
    rng = random.Random(f"{message_type}:{seed}")
    message_uuid = str(_uuid_for(seed, message_type))
    root = _message(root_name, number, message_uuid, reader=reader, author=author, seed=seed, test=test,
                    product=REPLY_PRODUCT)
    _sub(root, "antragsidentifikation", antragsidentifikation)
    created = _created(seed)
    if message_type == OZG_RUECKKANALFRAGE:
        frage = _sub(root, "frage")
        _sub(frage, "frageID", str(_uuid_for(seed, message_type + "/frage")))
        _sub(frage, "frageText", rng.choice(FRAGEN))
        _sub(frage, "antwortErbetenBis", (created + timedelta(days=14)).date().isoformat())
    elif message_type == OZG_STATUSMELDUNG:
        status = _sub(root, "status")
        code, name, text = rng.choice(BEARBEITUNGSSTATUS)
        _code(status, "bearbeitungsstatus", code, *BEARBEITUNGSSTATUS_LIST, name=name)
        _sub(status, "statustext", text)
        _sub(status, "statusSeit", created.isoformat())
    else:
        termin = _sub(root, "termin")
        day = (created + timedelta(days=7 + rng.randrange(21))).replace(hour=8 + rng.randrange(8),
                                                                        minute=rng.choice((0, 15, 30, 45)), second=0)
        _sub(termin, "beginn", day.isoformat())
        _sub(termin, "ende", (day + timedelta(minutes=30)).isoformat())
        ort = _sub(termin, "ort")
        bezeichnung, strasse, hausnummer, plz, stadt, raum = rng.choice(TERMINORTE)
        for tag, value in (("bezeichnung", bezeichnung), ("strasse", strasse), ("hausnummer", hausnummer),
                           ("postleitzahl", plz), ("ort", stadt), ("raum", raum)):
            if value is not None:
                _sub(ort, tag, value)
        _sub(termin, "hinweis", "Bitte bringen Sie Ihren Reisepass und ein aktuelles Lichtbild mit.")
    document = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return document, message_uuid


def make_attachment(seed: int, size: int = 24_000) -> tuple[bytes, str, str]:
    """A PDF-like attachment of exactly ``size`` bytes: (data, file name, content type).

    It starts with ``%PDF-1.7`` and ends with ``%%EOF`` so content sniffers treat it as a PDF; the
    stream is seeded filler, not a renderable document.
    """
    if size < _MIN_ATTACHMENT:
        raise ValueError(f"attachment size must be at least {_MIN_ATTACHMENT} bytes")
    head = (
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
        b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        + f"% xoev-hub sample attachment, seed {seed}, fictional content\n".encode("ascii")
    )
    tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    stream_head_template = "3 0 obj\n<< /Length {n:010d} >>\nstream\n"
    filler_len = size - len(head) - len(tail) - len(stream_head_template.format(n=0))
    filler = random.Random(f"ozg-anlage:{seed}").randbytes(filler_len)
    data = b"".join((head, stream_head_template.format(n=filler_len).encode("ascii"), filler, tail))  # one copy
    return data, attachment_filename(seed), "application/pdf"


def attachment_filename(seed: int) -> str:
    """The file name of the sample attachment for ``seed`` (shared by message and attachment)."""
    return f"nachweis-{seed}.pdf"


def _uuid_for(seed: int, kind: str = "ozg-antrag") -> uuid.UUID:
    """A version-4-shaped UUID derived from the seed: same seed, same nachrichtenUUID."""
    digest = hashlib.sha256(f"xoev-hub:{kind}:{seed}".encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def _created(seed: int) -> datetime:
    return _EPOCH + timedelta(seconds=97 * (seed % 1_000_000))


def _message(root_name: str, number: str, message_uuid: str, *, reader: Party, author: Party, seed: int,
             test: bool, product: str = PRODUCT) -> etree._Element:
    """The root element with the XÖV product attributes and the nachrichtenkopf.g2g."""
    xau = XAUSLAENDER_NAMESPACE
    root = etree.Element(etree.QName(xau, root_name), nsmap={"xau": xau})
    root.set("produkt", product)
    root.set("produkthersteller", PRODUCT_VENDOR)
    root.set("produktversion", PRODUCT_VERSION)
    root.set("standard", "XAusländer")
    root.set("version", "26.11")
    root.set("test", "true" if test else "false")
    head = _sub(root, "nachrichtenkopf.g2g")
    ident = _sub(head, "identifikation.nachricht")
    _sub(ident, "nachrichtenUUID", message_uuid)
    _code(ident, "nachrichtentyp", number, NACHRICHTENTYP_LIST_URI, None)
    _sub(ident, "erstellungszeitpunkt", _created(seed).isoformat())
    _authority(head, "leser", reader)
    _authority(head, "autor", author)
    return root


def _sniff_content_type(data: bytes) -> str:
    return "application/pdf" if data.startswith(b"%PDF-") else "application/octet-stream"


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    """An unqualified child (XÖV messages qualify only the root element)."""
    child = etree.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def _code(
    parent: etree._Element,
    tag: str,
    code: str,
    list_uri: str | None,
    list_version: str | None,
    *,
    name: str | None = None,
) -> etree._Element:
    """An XÖV code element: ``<code>`` (+ ``<name>``) with listURI / listVersionID."""
    element = _sub(parent, tag)
    if list_uri is not None:
        element.set("listURI", list_uri)
    if list_version is not None:
        element.set("listVersionID", list_version)
    _sub(element, "code", code)
    if name is not None:
        _sub(element, "name", name)
    return element


def _authority(parent: etree._Element, tag: str, party: Party) -> None:
    """``leser``/``autor``: Behördenkennung (praefix + kennung, split at the first ':') and name."""
    praefix, sep, kennung = party.identifier.partition(":")
    if not sep or not praefix or not kennung:
        raise ValueError(f"party identifier {party.identifier!r} is not 'praefix:kennung'")
    element = _sub(parent, tag)
    kennung_of = _sub(element, "behoerdenkennung")
    _code(kennung_of, "praefix", praefix, *DVDV_PRAEFIX_LIST)
    _code(kennung_of, "kennung", kennung, ABH_KENNUNG_LIST_URI if praefix == "azr" else None, None)
    _sub(element, "name", party.name or party.identifier)
