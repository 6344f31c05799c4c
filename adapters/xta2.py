"""Delivery profile "xta2": XTA 2 Version 3 (Webservice 2.1.1) with end-to-end signed and
encrypted content, as the Fachverfahren of the Ausländerbehörden (ADVIS, AUSO, OK.VISA, ...)
receive it through their XTA server.

Per delivery: sign every content part (detached XML-DSig, RSA-SHA256), wrap the parts in an
xta:ContentContainer, encrypt that for the reader (AES-256-GCM + RSA-OAEP/MGF1-SHA256) into
xenc:EncryptedData, then createMessageId and sendMessage with the MessageMetaData header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from adapters.base import Delivery, DeliveryReceipt
from hub.errors import ConfigError, XtaFault
from transport.content import Content
from transport.security.encryption import encrypt_xml
from transport.security.keys import SigningIdentity
from transport.security.signature import sign_content
from transport.security.xml import serialize
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.metadata import MessageMetaData, Party


# errorCode 9024 (ParameterIsNotValid): "MessageID already used"
MESSAGE_ID_ALREADY_USED = "9024"


@dataclass(frozen=True)
class Xta2Options:
    """Profile options (``adapters.<name>.options`` in the config)."""

    encrypt: bool = True
    sign: bool = True

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> "Xta2Options":
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown xta2 option(s): {', '.join(sorted(unknown))}")
        return cls(**options)


class Xta2Adapter:
    """Delivers through one XTA 2 endpoint; thread-safe (the client keeps a session per thread)."""

    def __init__(self, name: str, *, endpoint: XtaEndpoint, author: Party, identity: SigningIdentity,
                 options: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self._author = author
        self._identity = identity
        self._options = Xta2Options.from_mapping(options or {})
        self._client = XtaClient(endpoint)

    def check(self) -> None:
        if not self._client.check_account_active(self._author):
            raise XtaFault(f"XTA account {self._author.identifier} is not active",
                           exception_type="PermissionDeniedException", code=None)

    def prepare_container(self, delivery: Delivery) -> Any:
        """Sign, containerise and encrypt the content: the GenericContentContainer to send."""
        content: Content = delivery.content
        if self._options.sign:
            content = sign_content(content, self._identity)
        container = build_content_container(content)
        if self._options.encrypt:
            container = encrypt_xml(serialize(container), delivery.reader_certificate)
        return generic_container(container)

    def new_transport_id(self) -> str:
        return self._client.create_message_id(self._author)

    def deliver(self, delivery: Delivery, transport_message_id: str, *, resend: bool = False) -> DeliveryReceipt:
        container = self.prepare_container(delivery)
        message_id = transport_message_id
        metadata = MessageMetaData(
            author=self._author,
            reader=delivery.reader,
            message_id=message_id,
            service=delivery.service,
            business_scenario=delivery.business_scenario,
            message_type=delivery.message_type,
            size=delivery.content.size,
            test=delivery.test,
        )
        try:
            self._client.send_message(metadata, container)
        except XtaFault as fault:
            if resend and fault.code == MESSAGE_ID_ALREADY_USED:
                return DeliveryReceipt(transport_message_id=message_id, duplicate=True)
            raise
        return DeliveryReceipt(transport_message_id=message_id)

    def close(self) -> None:
        self._client.close()
