"""The return channel's transport side against the real XTA simulator over loopback: replies sent by
an authority (hub.replies_load.send_replies) land in the portal's mailbox, and the portal's
Xta2Mailbox lists, fetches (decrypt + verify) and commits (close) them; bad replies come back with
their problem, endpoint trouble raises transient."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.registry import mailbox_class
from adapters.xta2_mailbox import Xta2Mailbox
from hub.config import MailboxConfig
from hub.errors import (
    ConfigError,
    DecryptionFailed,
    EndpointUnavailable,
    HubError,
    MalformedAnswer,
    SecurityError,
    SignatureInvalid,
    XtaFault,
)
from hub.keystore import KeyStore
from hub.replies_load import ReplyToSend, sample_reply, send_replies
from hub.samples import OZG_RUECKKANALFRAGE, OZG_STATUSMELDUNG, OZG_TERMINMITTEILUNG
from tests.integration.test_xta_support import sim_config
from transport.content import ContentPart
from transport.security.keys import load_certificate, load_signing_identity
from transport.xta.container import (
    ENCRYPTED_DATA,
    GENERIC_CONTENT_CONTAINER,
    parse_content_container,
)
from transport.xta.metadata import Party
from transport.xta.simulator import InjectedFault, RunningSimulator, serve

PORTAL = Party("alp:000001", "OZG-Portal (Test)", "Ausländerportal")
ABH = Party("azr:000100", "Ausländerbehörde Musterstadt (Test)", "Ausländerbehörde")
TYPES = (OZG_RUECKKANALFRAGE, OZG_STATUSMELDUNG, OZG_TERMINMITTEILUNG)
REF = "OZG-ANTRAG-00004711"


def _mailbox_config(pki: dict[str, tuple[Path, Path]], url: str, **options: Any) -> MailboxConfig:
    return MailboxConfig.model_validate({
        "endpoint": url, "timeout": 10,
        "account": {"identifier": PORTAL.identifier, "name": PORTAL.name, "category": PORTAL.category},
        "decryption_key": str(pki["portal"][0]),
        # pinned one by one: mallory's certificate comes from the same CA and must not be trusted
        "trusted_signers": [str(pki["azr-000100"][1]), str(pki["azr-000200"][1])],
        "options": options})


def _identity(pki: dict[str, tuple[Path, Path]], name: str) -> Any:
    return load_signing_identity(*pki[name])


def _send(pki: dict[str, tuple[Path, Path]], url: str, replies: list[ReplyToSend], **kwargs: Any) -> list[str]:
    return send_replies(url, replies, authority_identity=_identity(pki, "azr-000100"), authority_party=ABH,
                        portal_party=PORTAL, portal_certificate=load_certificate(pki["portal"][1]), timeout=10,
                        **kwargs)


def _replies(seed: int = 1, **kwargs: Any) -> list[ReplyToSend]:
    return [sample_reply(t, portal_party=PORTAL, authority_party=ABH, antragsidentifikation=REF, seed=seed + i,
                         **kwargs) for i, t in enumerate(TYPES)]


@pytest.fixture(params=[True, False], ids=["mtom", "inline"])
def sim(request, pki) -> Iterator[RunningSimulator]:
    """The simulator of the other tests (reader keys of the authorities, the CA as trusted signer);
    it holds no key for the portal, so replies are stored as sent."""
    with serve(sim_config(pki, mtom_responses=request.param)) as running:
        yield running


@pytest.fixture()
def mailbox(sim, pki) -> Iterator[Xta2Mailbox]:
    box = mailbox_class("xta2").from_config("test-portal", _mailbox_config(pki, sim.url), KeyStore())
    assert isinstance(box, Xta2Mailbox)
    yield box
    box.close()


def test_replies_are_listed_fetched_verified_and_committed(sim, mailbox, pki) -> None:
    replies = _replies()
    replies[0] = ReplyToSend(OZG_RUECKKANALFRAGE, replies[0].message, reply_uuid=replies[0].reply_uuid,
                             attachments=(ContentPart(b"%PDF-1.7 Formular\n", "application/pdf", "formular.pdf"),))
    ids = _send(pki, sim.url, replies)

    assert len(set(ids)) == 3
    assert sorted(mailbox.pending(10)) == sorted(ids)
    assert len(mailbox.pending(2)) == 2
    for reply, transport_id in zip(replies, ids, strict=True):
        fetched = mailbox.fetch(transport_id)
        assert fetched is not None and fetched.problem is None
        assert fetched.transport_message_id == transport_id
        assert fetched.author == ABH.identifier and fetched.message_type == reply.message_type
        # decrypted, verified, the signature part removed: byte-identical to what was sent
        assert fetched.content == reply.content
        raw = etree.fromstring(fetched.raw)
        assert raw.tag == GENERIC_CONTENT_CONTAINER and raw[0].tag == ENCRYPTED_DATA  # still encrypted
        assert REF.encode() not in fetched.raw and b"xop:Include" not in fetched.raw
    # fetched but not committed: still pending, handed out again under the same id
    assert sorted(mailbox.pending(10)) == sorted(ids)
    again = mailbox.fetch(ids[1])
    assert again is not None and again.transport_message_id == ids[1] and again.content == replies[1].content
    for transport_id in ids[:2]:
        mailbox.commit(mailbox.fetch(transport_id))
    assert mailbox.pending(10) == [ids[2]]
    assert mailbox.fetch(ids[0]) is None  # gone
    mailbox.commit(again)  # committing a reply twice (another handle) is harmless
    assert mailbox.pending(10) == [ids[2]]
    assert sim.store.get(ids[0]).reader == PORTAL.identifier and sim.store.get(ids[0]).encrypted


def test_forged_and_undecryptable_replies_come_back_with_their_problem(sim, mailbox, pki) -> None:
    good, forged, undecryptable = _replies(seed=20)
    forged = sample_reply(OZG_STATUSMELDUNG, portal_party=PORTAL, authority_party=ABH, antragsidentifikation=REF,
                          seed=21, signer=_identity(pki, "mallory"))
    undecryptable = sample_reply(OZG_TERMINMITTEILUNG, portal_party=PORTAL, authority_party=ABH,
                                 antragsidentifikation=REF, seed=22,
                                 encrypt_for=load_certificate(pki["azr-000200"][1]))
    ids = _send(pki, sim.url, [good, forged, undecryptable])

    assert sorted(mailbox.pending(10)) == sorted(ids)
    fetched = {i: mailbox.fetch(i) for i in ids}
    assert fetched[ids[0]].problem is None and fetched[ids[0]].content == good.content
    assert isinstance(fetched[ids[1]].problem, SignatureInvalid)
    assert isinstance(fetched[ids[2]].problem, DecryptionFailed)
    for transport_id in ids[1:]:
        reply = fetched[transport_id]
        assert reply.content is None and reply.raw and etree.fromstring(reply.raw).tag == GENERIC_CONTENT_CONTAINER
        assert reply.author == ABH.identifier and reply.message_type in TYPES
    # parked by the caller, then committed like any other reply
    for reply in fetched.values():
        mailbox.commit(reply)
    assert mailbox.pending(10) == []


def test_plaintext_reply_is_a_problem_unless_allowed(sim, pki) -> None:
    [reply] = _replies(seed=30)[:1]
    plain = ReplyToSend(reply.message_type, reply.message, encrypt=False)
    [transport_id] = _send(pki, sim.url, [plain])
    strict = Xta2Mailbox.from_config("p", _mailbox_config(pki, sim.url), KeyStore())
    lenient = Xta2Mailbox.from_config("p", _mailbox_config(pki, sim.url, require_encryption=False), KeyStore())
    try:
        refused = strict.fetch(transport_id)
        assert isinstance(refused.problem, SecurityError) and refused.problem.reason == "content_not_encrypted"
        assert refused.content is None  # parked as it came: the plaintext container, signature included
        assert parse_content_container(etree.fromstring(refused.raw)).message == plain.content.message
        assert lenient.fetch(transport_id).content == plain.content
    finally:
        strict.close()
        lenient.close()


def test_simulator_holding_the_portal_key_refuses_bad_replies_unless_accept_unverified(pki, tmp_path) -> None:
    from transport.security.demopki import make_test_pki
    from transport.security.keys import load_private_key

    keys = {PORTAL.identifier: load_private_key(pki["portal"][0])}
    intruder = make_test_pki(tmp_path, ["intruder"])["intruder"]  # another CA: trusted by nobody here
    forged = sample_reply(OZG_STATUSMELDUNG, portal_party=PORTAL, authority_party=ABH, antragsidentifikation=REF,
                          seed=41, signer=load_signing_identity(*intruder))
    undecryptable = sample_reply(OZG_STATUSMELDUNG, portal_party=PORTAL, authority_party=ABH,
                                 antragsidentifikation=REF, seed=42, encrypt_for=load_certificate(pki["mallory"][1]))
    with serve(sim_config(pki, reader_keys=keys)) as strict:
        for bad in (forged, undecryptable):
            with pytest.raises(XtaFault) as refused:
                _send(pki, strict.url, [bad])
            assert refused.value.code == "9052"
        assert strict.store.stats()["total"] == 0
    with serve(sim_config(pki, reader_keys=keys, accept_unverified=True)) as lenient:
        ids = _send(pki, lenient.url, [forged, undecryptable, *_replies(seed=43)[:1]])
        stored = [lenient.store.get(i) for i in ids]
        assert not stored[0].verified and not stored[0].encrypted  # decrypted, signature not accepted
        assert not stored[1].verified and stored[1].encrypted  # kept as received
        assert stored[2].verified
        box = Xta2Mailbox.from_config("p", _mailbox_config(pki, lenient.url), KeyStore())
        try:
            assert sorted(box.pending(10)) == sorted(ids)
            assert isinstance(box.fetch(ids[0]).problem, SignatureInvalid)
            assert isinstance(box.fetch(ids[1]).problem, DecryptionFailed)
            assert box.fetch(ids[2]).problem is None
        finally:
            box.close()


def test_endpoint_trouble_raises_transient_and_loses_nothing(sim, mailbox, pki) -> None:
    [transport_id] = _send(pki, sim.url, _replies(seed=50)[:1])
    troubles = [
        (InjectedFault(operation="getStatusList", http_status=503), "pending", EndpointUnavailable),
        (InjectedFault(operation="getStatusList", garbage="html"), "pending", MalformedAnswer),
        (InjectedFault(operation="getMessage", code="9030"), "fetch", XtaFault),
        (InjectedFault(operation="getMessage", drop=True), "fetch", EndpointUnavailable),
        (InjectedFault(operation="getMessage", garbage="truncated-mtom"), "fetch", MalformedAnswer),
    ]
    for fault, call, error in troubles:
        sim.inject(fault)
        with pytest.raises(error) as raised:
            mailbox.pending(10) if call == "pending" else mailbox.fetch(transport_id)
        assert isinstance(raised.value, HubError) and raised.value.transient, fault
    url = sim.url
    sim.stop()  # the endpoint is gone altogether
    with pytest.raises(EndpointUnavailable) as down:
        mailbox.pending(10)
    assert down.value.transient
    with serve(sim.simulator.config, port=int(url.rsplit(":", 1)[1].split("/")[0]), simulator=sim.simulator):
        assert mailbox.pending(10) == [transport_id]
        assert mailbox.fetch(transport_id).problem is None


def test_permanent_xta_faults_raise_and_a_gone_reply_is_none(sim, mailbox, pki) -> None:
    assert mailbox.fetch("urn:de:xta:messageid:not-there") is None  # 9070: not (any more) in the mailbox
    sim.inject(InjectedFault(operation="getStatusList", code="9011"))
    with pytest.raises(XtaFault) as locked:
        mailbox.pending(10)
    assert locked.value.code == "9011" and not locked.value.transient


def test_configuration_errors_fail_at_start(pki, tmp_path) -> None:
    config = _mailbox_config(pki, "http://127.0.0.1:9/xta")
    with pytest.raises(ConfigError, match="trusted_signers"):
        Xta2Mailbox.from_config("p", config.model_copy(update={"trusted_signers": ()}), KeyStore())
    with pytest.raises(ConfigError, match="decryption_key"):
        Xta2Mailbox.from_config("p", config.model_copy(update={"decryption_key": tmp_path / "none.pem"}), KeyStore())
    with pytest.raises(ConfigError, match=r"mailboxes\.p\.options\.require_encryption"):
        Xta2Mailbox.from_config("p", _mailbox_config(pki, "http://127.0.0.1:9/xta", require_encryption="yes"),
                                KeyStore())
    with pytest.raises(ConfigError, match="mailboxes.p.options.mtom"):
        Xta2Mailbox.from_config("p", _mailbox_config(pki, "http://127.0.0.1:9/xta", mtom=True), KeyStore())
    with pytest.raises(ConfigError, match="unknown mailbox profile 'nope'"):
        mailbox_class("nope")


def test_far_side_texts_are_clipped_and_printable_in_errors_and_logs(sim, mailbox, pki, caplog) -> None:
    forged = sample_reply(OZG_STATUSMELDUNG, portal_party=PORTAL, authority_party=ABH, antragsidentifikation=REF,
                          seed=60, signer=_identity(pki, "mallory"))  # cannot be opened: logged with its author
    [transport_id] = _send(pki, sim.url, [forged])
    hostile = "azr:000100\n2024-01-01 ERROR forged log line\x1b[31m" + "y" * 5000
    real = mailbox._msgbox

    class HostileMsgBox:
        """The real answer, with the far side's ids replaced by hostile text."""

        def __init__(self, **metadata: Any) -> None:
            self.metadata = metadata

        def get_message(self, reader: Party, message_id: str) -> Any:
            fetched = real.get_message(reader, message_id)
            return replace(fetched, metadata=replace(fetched.metadata, **self.metadata))

    def clean(text: str) -> None:
        assert text.isprintable() and "forged log line" in text and len(text) < 400, text

    mailbox._msgbox = HostileMsgBox(message_id=hostile)
    with pytest.raises(MalformedAnswer) as mismatch:
        mailbox.fetch(transport_id)
    clean(str(mismatch.value))
    mailbox._msgbox = HostileMsgBox(author=replace(ABH, identifier=hostile))
    with caplog.at_level(logging.WARNING, logger="adapters.xta2_mailbox"):
        reply = mailbox.fetch(transport_id)
    assert isinstance(reply.problem, SignatureInvalid)
    [line] = [r.getMessage() for r in caplog.records if r.name == "adapters.xta2_mailbox"]
    clean(line)
