"""The hub's one exception tree.

Every error the hub raises on purpose is a ``HubError``. Third-party exceptions (pika, requests,
lxml, zeep, cryptography) are translated into this tree at the edge where they occur, so callers
only ever catch ``HubError`` subclasses. This module imports nothing from the project: every layer
(``schemas``, ``transport``, ``adapters``, ``hub``) may import it without breaking the one-way
dependency rule.

    HubError
    ├── ConfigError                  bad or missing configuration (names the key)
    │   └── BrokerAccessRefused      the broker answered and refused login, vhost or permission
    ├── BrokerError
    │   ├── BrokerUnavailable        cannot connect / connection lost          (transient)
    │   ├── PublishNotConfirmed      broker nacked or did not confirm in time  (transient)
    │   └── UnknownDestination       no binding for the destination (mandatory return)
    ├── MessageError                 the message itself is unusable            (permanent)
    │   ├── EnvelopeError            AMQP properties/headers/body break the contract
    │   ├── XmlRejected              hardened parser refused the XML (DTD, entities, limits, syntax)
    │   ├── SchemaViolation          valid XML, but not valid against the registered schema
    │   ├── UnknownMessageType       no schema registered for the message type
    │   └── ContentTooLarge          content above the hub's ([limits]) or the profile's size limit
    ├── DirectoryError               destination not in the directory           (permanent)
    ├── LedgerUnavailable            the delivery ledger cannot be read/written  (transient)
    ├── TrackingStoreUnavailable     the tracking store cannot be read/written   (transient)
    ├── InvalidQuery                 a tracking query cannot be answered as asked (bad cursor)
    ├── SecurityError                                                           (permanent)
    │   ├── KeyStoreError            key/certificate cannot be loaded
    │   ├── UnsupportedAlgorithm     algorithm refused (deprecated or unknown)
    │   ├── SignatureInvalid         signature does not verify / wrong signer
    │   └── DecryptionFailed         cannot decrypt (wrong key, tampered ciphertext)
    └── TransportError
        ├── EndpointUnavailable      connection refused/reset, timeout, HTTP 5xx (transient)
        │   ├── TransportIdInvalid   the endpoint no longer knows the recorded transport id (forgotten)
        │   └── MalformedAnswer      the endpoint answered, but not what the protocol promises
        │                            (not SOAP 1.2, empty/unexpected body, missing field)  (transient)
        ├── ProtocolError            a document breaks the protocol (the simulator's view of a request)
        └── XtaFault                 SOAP fault carrying an xta exception + errorCode

``transient`` says whether retrying the same message later can succeed. ``reason`` is a short,
stable, low-cardinality slug used in dead-letter headers and metric labels; messages never carry
payload content, only ids, sizes and hashes.
"""

from __future__ import annotations

import re


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    transient: bool = False
    reason: str = "hub_error"
    # seconds the endpoint asked us to wait (HTTP Retry-After); the retry ladder honours it
    retry_after: float | None = None

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(HubError):
    reason = "config"


class BrokerAccessRefused(ConfigError):
    """RabbitMQ answered and refused the credentials, the vhost or an operation (403/530): fix the
    broker URL or the user's permissions; retrying or "starting RabbitMQ" cannot help."""

    reason = "broker_access_refused"


class BrokerError(HubError):
    reason = "broker"


class BrokerUnavailable(BrokerError):
    transient = True
    reason = "broker_unavailable"


class PublishNotConfirmed(BrokerError):
    transient = True
    reason = "publish_not_confirmed"


class UnknownDestination(BrokerError):
    reason = "unknown_destination"


class MessageError(HubError):
    reason = "bad_message"


class EnvelopeError(MessageError):
    reason = "envelope"


class XmlRejected(MessageError):
    reason = "xml_rejected"


class SchemaViolation(MessageError):
    reason = "schema_violation"


class UnknownMessageType(MessageError):
    reason = "unknown_message_type"


class ContentTooLarge(MessageError):
    reason = "content_too_large"


class DirectoryError(HubError):
    reason = "directory"


class LedgerUnavailable(HubError):
    """The ledger cannot be read or written; delivering without it could duplicate, so retry later."""

    transient = True
    reason = "ledger_unavailable"


class TrackingStoreUnavailable(HubError):
    """The tracking store cannot be read or written (database down, locked, timed out): the status
    event stays on its queue and is stored later; a query answers "unavailable", not "not found"."""

    transient = True
    reason = "tracking_store_unavailable"


class InvalidQuery(HubError):
    """A tracking query the store cannot answer as asked (a malformed page cursor, a bad limit):
    the caller's mistake (HTTP 400), never a reason to retry."""

    reason = "invalid_query"


class SecurityError(HubError):
    reason = "security"


class KeyStoreError(SecurityError):
    reason = "keystore"


class UnsupportedAlgorithm(SecurityError):
    reason = "unsupported_algorithm"


class SignatureInvalid(SecurityError):
    reason = "signature_invalid"


class DecryptionFailed(SecurityError):
    reason = "decryption_failed"


class TransportError(HubError):
    reason = "transport"


class EndpointUnavailable(TransportError):
    transient = True
    reason = "endpoint_unavailable"


class TransportIdInvalid(EndpointUnavailable):
    """The endpoint no longer knows the transport id the hub recorded for an application (a
    FIT-Connect submission deleted before it was submitted, an expired id): transient, and the
    pipeline forgets the id, so the next attempt allocates a new one instead of failing forever."""

    reason = "transport_id_invalid"


class MalformedAnswer(EndpointUnavailable):
    """The far side answered nonsense: an HTML page, an empty or unexpected SOAP body, a SOAP 1.1
    envelope, a truncated MTOM package. That is the endpoint's fault, not the message's (pitfall 11):
    retried along the ladder and counted by the breaker, so one bad deploy upstream does not empty
    the queue into the dead letters. Only explicit XTA refusals (``XtaFault``) are permanent."""

    reason = "endpoint_protocol"


class ProtocolError(TransportError):
    reason = "protocol"


_XTA_CODE = re.compile(r"^\d{4}$")
_EXCEPTION_TYPE = re.compile(r"^[A-Za-z]{1,64}$")


class XtaFault(TransportError):
    """A SOAP fault from an XTA server: ``exception_type`` is the xta detail element's local name
    (e.g. ``PermissionDeniedException``), ``code`` the errorCode (e.g. ``"9012"``).

    ``transient`` is the caller's verdict: which codes a retry can cure is the XTA code list's
    business, kept in one table (``transport.xta.faults.FAULT_TABLE``, which this module cannot
    import), and ``faults.error_from_fault`` passes its answer. Without one the fault is permanent,
    as an explicit refusal and any code the table does not list are."""

    reason = "xta_fault"

    def __init__(self, message: str, *, exception_type: str, code: str | None, transient: bool = False) -> None:
        # the code comes from a remote server: only a 4-digit code may reach reason slugs, routing
        # keys and metric labels (anything else would be unbounded cardinality or an AMQP error)
        code = code if code is not None and _XTA_CODE.match(code) else None
        super().__init__(message, reason=f"xta_{code}" if code else "xta_fault")
        self.exception_type = exception_type if _EXCEPTION_TYPE.match(exception_type or "") else "XtaException"
        self.code = code
        self.transient = transient
