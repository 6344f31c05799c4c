"""FIT-Connect conformance: the REAL fit-connect adapter against the REAL simulator over loopback,
held against the official documents in ../shared/standards/fit-connect (CI fails when they are
missing, see tests/standards.py).

A recording reverse proxy in this process sits between adapter and simulator: every request the
adapter sends and every answer it gets is validated HERE with openapi-core against
submission-api-1.1.3.yaml (servers replaced by the proxy's URL), independently of the simulator's
own checker, whose ``violations`` must stay empty too. The metadata documents the simulator
received are validated with jsonschema against metadata.schema.json; the adapter's JWEs are opened
with jwcrypto (the adapter uses joserfc) and the destination's private key from the simulator's
state_dir; an accept SET signed with jwcrypto is verified by the adapter's event-log path.

The spec's examples parsing with the adapter's models (examples/submission-api-1.1.3/*.json and the
example SETs' payloads) is covered by tests/unit/fitconnect/test_fitconnect_models.py, not repeated.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.security.exceptions import SecurityProviderError
from openapi_core.security.factories import SecurityProviderFactory
from openapi_core.security.providers import BaseProvider
from werkzeug.datastructures import Headers, ImmutableMultiDict
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from adapters.base import AdapterContext, Delivery, MessageKind, Recipient
from adapters.fitconnect import FitConnectAdapter, FitConnectAddress
from tests.standards import standards_path
from transport.content import Content, ContentPart
from transport.fitconnect.errors import (
    FitConnectMalformed,
    FitConnectRefused,
    FitConnectUnavailable,
    KeyRefused,
)
from transport.fitconnect.events import SubmissionStatus
from transport.fitconnect.simulator import (
    DestinationSpec,
    FitConnectSimulatorSettings,
    RunningFitConnectSimulator,
    serve,
)
from transport.fitconnect.simulator.settings import DEFAULT_SCHEMA_URI, DEFAULT_SERVICE

OPENAPI = "fit-connect/openapi/submission-api-1.1.3.yaml"
METADATA_SCHEMA = "fit-connect/schemas/metadata/1.0.0/metadata.schema.json"
DEST = "7881dba9-4055-4854-8b6d-11ea5b7f3047"
FLAWED = {  # key_flaw -> (destination id, the reason slug KeyRefused must carry)
    "short": ("0f3b5d3e-5a52-4a8e-9a57-3f7f1c1d2e10", "fitconnect_key_too_small"),
    "alg": ("1c4e0a8b-7d2f-4e61-8b5a-2a9f3c6d7e81", "fitconnect_key_alg"),
    "no_x5c": ("2d5f1b9c-8e30-4f72-9c6b-3b0a4d7e8f92", "fitconnect_key_x5c"),
    "untrusted": ("3e6a2cad-9f41-4a83-ad7c-4c1b5e8f90a3", "fitconnect_key_untrusted"),
}
ACCEPT = "https://schema.fitko.de/fit-connect/events/accept-submission"
SET_SCHEMA = "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json"
SECRET_ENV = "FC_CONFORMANCE_SECRET"
PROBLEMS = [{"type": "https://schema.fitko.de/fit-connect/events/problems/an-example", "title": "Beispiel",
             "detail": "Nur ein Beispiel.", "instance": "metadata"}]
# every Submission API operation the sender side uses: (method, path pattern) -> operationId
SENDER_OPERATIONS = {
    ("GET", r"/v1/info"): "get-info",
    ("GET", r"/\.well-known/jwks\.json"): "get-jwks",
    ("GET", r"/v1/destinations/[^/]+"): "get-destination-info",
    ("GET", r"/v1/destinations/[^/]+/keys/[^/]+"): "get-destination-key",
    ("POST", r"/v1/submissions"): "create-submission",
    ("PUT", r"/v1/submissions/[^/]+/attachments/[^/]+"): "add-submission-attachment",
    ("PUT", r"/v1/submissions/[^/]+"): "submit-submission",
    ("GET", r"/v1/cases/[^/]+/events"): "get-case-events",
}


# --------------------------------------------------------------------------- the recording proxy


@dataclass(frozen=True)
class Exchange:
    """One request as the simulator got it and the answer as the adapter got it (bytes, headers)."""

    method: str
    path: str
    query: ImmutableMultiDict[str, str]
    request_headers: Headers
    request_body: bytes
    status: int
    response_headers: Headers
    response_body: bytes

    def operation(self) -> str | None:
        for (method, pattern), name in SENDER_OPERATIONS.items():
            if self.method == method and re.fullmatch(pattern, self.path):
                return name
        return None


Rewrite = Callable[[str, str, bytes], bytes | None]


class RecordingProxy:
    """A reverse proxy (WSGI, threaded werkzeug server on loopback) in front of the simulator: it
    forwards every request and keeps each exchange. A test may fail a request without forwarding
    it (``fail_once``) or rewrite a request or an answer on the way (to prove the checks catch it)."""

    _HOP: ClassVar[frozenset[str]] = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "date", "server"})

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.exchanges: list[Exchange] = []
        self.rewrite_request: Rewrite | None = None
        self.rewrite_response: Rewrite | None = None
        self._fail: Callable[[str, str], bool] | None = None
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fc-recording-proxy")
        self._thread.start()

    def fail_once(self, when: Callable[[str, str], bool]) -> None:
        """Answer the next request matching ``when(method, path)`` with 503 itself (not forwarded)."""
        self._fail = when

    def reset(self) -> None:
        with self._lock:
            self.exchanges.clear()
        self.rewrite_request = self.rewrite_response = self._fail = None

    def recorded(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        body = request.get_data()
        method, path = request.method, request.path
        fail = self._fail
        if fail is not None and fail(method, path):
            self._fail = None
            return Response('{"title": "injected"}', 503, {"Retry-After": "0"},
                            content_type="application/problem+json")(environ, start_response)
        if self.rewrite_request is not None:
            body = self.rewrite_request(method, path, body) or body
        headers = {k: v for k, v in request.headers.items() if k.lower() not in self._HOP}
        answer = self._session.request(method, self.upstream + path, params=list(request.args.items(multi=True)),
                                       data=body, headers=headers, allow_redirects=False, timeout=60)
        content = answer.content
        if self.rewrite_response is not None:
            content = self.rewrite_response(method, path, content) or content
        response_headers = Headers([(k, v) for k, v in answer.headers.items() if k.lower() not in self._HOP])
        with self._lock:
            self.exchanges.append(Exchange(method, path, ImmutableMultiDict(list(request.args.items(multi=True))),
                                           Headers(request.headers), body, answer.status_code,
                                           response_headers, content))
        return Response(content, answer.status_code, response_headers)(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._session.close()


# --------------------------------------------------------------------------- the test's own OpenAPI check


class _Bearer(BaseProvider):
    """The spec's OAuth2 requirement, as far as a request shows it: a bearer token is sent."""

    def __call__(self, parameters: RequestParameters) -> Any:
        scheme, _, token = str(parameters.header.get("Authorization", "")).partition(" ")
        if scheme != "Bearer" or not token.strip():
            raise SecurityProviderError("no bearer token")
        return token


class _Providers(SecurityProviderFactory):
    PROVIDERS = {**SecurityProviderFactory.PROVIDERS, "oauth2": _Bearer}  # noqa: RUF012


@dataclass
class _OpenApiRequest:
    """openapi-core's Request protocol over a recorded exchange."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class _OpenApiResponse:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


class OfficialDocument:
    """submission-api-1.1.3.yaml with its servers replaced by the proxy's loopback URL."""

    def __init__(self, document: Path, server_url: str) -> None:
        spec = yaml.safe_load(document.read_text(encoding="utf-8"))
        spec["servers"] = [{"url": server_url}]
        self.server_url = server_url
        config = Config(security_provider_factory=_Providers(),
                        extra_media_type_deserializers={"application/jose": lambda v: _text(v),
                                                        "application/problem+json": json.loads})
        self.api = OpenAPI.from_dict(spec, config=config)

    def request_of(self, exchange: Exchange) -> _OpenApiRequest:
        return _OpenApiRequest(self.server_url, exchange.path, exchange.method.lower(), exchange.request_body or None,
                               exchange.request_headers.get("Content-Type", "application/octet-stream"),
                               RequestParameters(query=exchange.query, header=exchange.request_headers))

    def errors(self, exchange: Exchange, *, responses: bool = True) -> list[str]:
        """What the document does not allow in the exchange (empty if nothing)."""
        found = []
        request = self.request_of(exchange)
        try:
            self.api.validate_request(request)
        except Exception as exc:  # noqa: BLE001 - openapi-core's errors have no single root
            found.append(f"request {exchange.method} {exchange.path}: {_describe(exc)}")
        if responses:
            response = _OpenApiResponse(exchange.status, exchange.response_headers.get("Content-Type", ""),
                                        exchange.response_headers, exchange.response_body)
            try:
                self.api.validate_response(request, response)
            except Exception as exc:  # noqa: BLE001
                found.append(f"response {exchange.method} {exchange.path} {exchange.status}: {_describe(exc)}")
        return found


def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    schema_errors = getattr(cause, "schema_errors", None) or []
    details = "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:200] for e in schema_errors)
    return f"{type(exc).__name__}: {details or cause}"


def assert_conformant(document: OfficialDocument, exchanges: list[Exchange],
                      *, skip_response: Callable[[Exchange], bool] = lambda e: False) -> None:
    """Every exchange with the Submission API validates; the token endpoint (not part of the
    document: an OAuth2 server) is checked for the client-credentials form instead."""
    errors: list[str] = []
    for exchange in exchanges:
        if exchange.path == "/token":
            assert exchange.method == "POST" and exchange.status == 200
            assert exchange.request_headers["Content-Type"] == "application/x-www-form-urlencoded"
            assert b"grant_type=client_credentials" in exchange.request_body
            continue
        assert exchange.operation() is not None, f"the adapter used {exchange.method} {exchange.path}"
        errors.extend(document.errors(exchange, responses=not skip_response(exchange)))
    assert errors == []


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFitConnectSimulator]:
    """The simulator checking with the official documents: one good destination, one per key flaw."""
    settings = FitConnectSimulatorSettings(
        state_dir=tmp_path_factory.mktemp("fc-conformance-sim"),
        destinations=(DestinationSpec(id=DEST),
                      *(DestinationSpec(id=dest, key_flaw=flaw) for flaw, (dest, _) in FLAWED.items())),  # type: ignore[arg-type]
        openapi=standards_path(OPENAPI), metadata_schema=standards_path(METADATA_SCHEMA))
    with serve(settings) as running:
        assert running.app.checker is not None  # the simulator's own OpenAPI checking is on
        yield running


@pytest.fixture(scope="module")
def proxy(sim: RunningFitConnectSimulator) -> Iterator[RecordingProxy]:
    running = RecordingProxy(sim.url)
    yield running
    running.close()


@pytest.fixture(scope="module")
def document(proxy: RecordingProxy) -> OfficialDocument:
    return OfficialDocument(standards_path(OPENAPI), proxy.url)


@pytest.fixture(scope="module")
def metadata_validator() -> Draft202012Validator:
    schema = json.loads(standards_path(METADATA_SCHEMA).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


class _NoKeys:
    def private_key_handle(self, *a: Any, **k: Any) -> Any:
        raise AssertionError("fit-connect loads no keys through the key source")

    certificates_handle = identity_handle = private_key_handle


def make_adapter(sim: RunningFitConnectSimulator, proxy: RecordingProxy) -> FitConnectAdapter:
    """The adapter as the hub builds it, from its config section, talking to the proxy."""
    section = {"submission_api": proxy.url, "token_url": f"{proxy.url}/token", "client_id": sim.client_id,
               "client_secret_env": SECRET_ENV, "trust_anchors": [str(sim.trust_anchor)],
               "service_name": "Bauantrag"}
    context = AdapterContext(keys=_NoKeys(), timeout=30.0, concurrency=2,
                             environ={SECRET_ENV: sim.client_secret})
    return FitConnectAdapter.from_config("fc", section, context)


def delivery(attachments: int, destination: str = DEST) -> Delivery:
    parts = tuple(ContentPart(f"%PDF-1.7 Anlage {i} ".encode() + bytes(range(256)) * (i + 1), "application/pdf",
                              filename=f"anlage-{i}.pdf") for i in range(attachments))
    message = f"<antrag nr='{attachments}'>Bauantrag \u00e4\u00f6\u00fc</antrag>".encode()
    return Delivery(message_id=str(uuid.uuid4()),
                    content=Content(ContentPart(message, "application/xml; charset=utf-8"), parts),
                    sender=None, recipient=Recipient("fc:bauamt", "Bauamt", FitConnectAddress(destination)),
                    service=DEFAULT_SERVICE,
                    message_type=MessageKind("fim.bauantrag", payload_schema=DEFAULT_SCHEMA_URI))


def submission_id(transport_id: str) -> str:
    return transport_id.split(":")[0]


def jwcrypto_accept(sim: RunningFitConnectSimulator, transport_id: str) -> None:
    """The receiver accepts with a SET signed by jwcrypto (the destination's signature key),
    posted to the simulator directly (not the adapter's traffic)."""
    sid, case, _ = transport_id.split(":")
    kid = sim.app.service.keys[DEST].signature.kid
    claims = {"$schema": SET_SCHEMA, "jti": str(uuid.uuid4()), "iss": DEST, "iat": 1700000000,
              "sub": f"submission:{sid}", "txn": f"case:{case}", "events": {ACCEPT: {}}}
    token = jc_jws.JWS(json.dumps(claims).encode())
    token.add_signature(jc_jwk.JWK.from_pem(sim.signature_key_path(DEST).read_bytes()), alg="PS512",
                        protected=json.dumps({"typ": "secevent+jwt", "alg": "PS512", "kid": kid}))
    bearer = requests.post(sim.token_url, data={"grant_type": "client_credentials", "client_id": sim.client_id,
                                                "client_secret": sim.client_secret}, timeout=30).json()["access_token"]
    answer = requests.post(f"{sim.url}/v1/cases/{case}/events", data=token.serialize(compact=True), timeout=30,
                           headers={"Content-Type": "application/jose", "Authorization": f"Bearer {bearer}"})
    assert answer.status_code == 204, answer.text


@dataclass
class Scenario:
    """Everything the adapter did in one run and what came of it."""

    exchanges: list[Exchange]
    deliveries: dict[str, tuple[Delivery, str]]  # name -> (delivery, transport id)
    reports: dict[str, SubmissionStatus] = field(default_factory=dict)
    resend_receipts: dict[str, bool] = field(default_factory=dict)  # name -> accepted_on_resend
    submit_failure: FitConnectUnavailable | None = None
    resend_exchanges: list[Exchange] = field(default_factory=list)


@pytest.fixture(scope="module")
def scenario(sim: RunningFitConnectSimulator, proxy: RecordingProxy) -> Scenario:
    """The adapter through everything it does: readiness, prepare, create, deliver with 0, 1 and 3
    attachments, a re-send after a failed submit and one after a successful submit, and the
    transport report before the decision, after an accept (jwcrypto SET), after a reject."""
    proxy.reset()
    sim.app.checker.clear()
    adapter = make_adapter(sim, proxy)
    try:
        adapter.check()
        done = Scenario([], {})
        for name, count in (("zero", 0), ("one", 1), ("three", 3), ("failed", 1)):
            item = delivery(count)
            adapter.prepare(item)
            tid = adapter.new_transport_id(item)
            done.deliveries[name] = (item, tid)
            done.reports[f"{name}:created"] = adapter.transport_report(tid)
        for name in ("zero", "one", "three"):
            item, tid = done.deliveries[name]
            assert adapter.deliver(item, tid).transport_message_id == tid

        # the submit fails (the proxy answers 503 in the service's place); the re-send resumes
        item, tid = done.deliveries["failed"]
        proxy.fail_once(lambda method, path: method == "PUT" and path == f"/v1/submissions/{submission_id(tid)}")
        with pytest.raises(FitConnectUnavailable) as failed:
            adapter.deliver(item, tid)
        done.submit_failure = failed.value
        done.resend_receipts["failed"] = adapter.deliver(item, tid, resend=True).accepted_on_resend

        # a re-send of a submission that got through: found in the event log, nothing sent again
        before = len(proxy.recorded())
        done.resend_receipts["one"] = adapter.deliver(*done.deliveries["one"], resend=True).accepted_on_resend
        done.resend_exchanges = proxy.recorded()[before:]

        done.reports["three:submitted"] = adapter.transport_report(done.deliveries["three"][1])
        jwcrypto_accept(sim, done.deliveries["three"][1])
        done.reports["three:accepted"] = adapter.transport_report(done.deliveries["three"][1])
        sim.receiver_reject(submission_id(done.deliveries["one"][1]), PROBLEMS)
        done.reports["one:rejected"] = adapter.transport_report(done.deliveries["one"][1])
        sim.receiver_accept(submission_id(done.deliveries["zero"][1]))
        done.reports["zero:accepted"] = adapter.transport_report(done.deliveries["zero"][1])
    finally:
        adapter.close()
    done.exchanges = proxy.recorded()
    proxy.reset()
    return done


@pytest.fixture
def clean(sim: RunningFitConnectSimulator, proxy: RecordingProxy) -> Iterator[None]:
    """A test of its own traffic: recordings, rewrites and the simulator's violations reset."""
    proxy.reset()
    sim.app.checker.clear()
    yield
    proxy.reset()
    sim.app.checker.clear()


# --------------------------------------------------------------------------- the scenario's outcome


def test_the_adapter_delivers_resends_and_follows_the_status(sim: RunningFitConnectSimulator,
                                                            scenario: Scenario) -> None:
    for name, (item, tid) in scenario.deliveries.items():
        stored = sim.store.get(submission_id(tid))
        assert stored is not None and stored.destination_id == DEST, name
        assert stored.data == item.content.message.data, name
        ids = list(stored.announced)
        assert len(ids) == len(item.content.attachments)
        assert {aid: stored.attachments[aid] for aid in ids} == dict(
            zip(ids, (bytes(p.data) for p in item.content.attachments), strict=True)), name
    assert len(sim.store.all(destination_id=DEST)) == len(scenario.deliveries)  # a re-send creates nothing
    assert all(r.status_name == "created" and not r.submitted
               for k, r in scenario.reports.items() if k.endswith(":created"))

    assert scenario.submit_failure is not None and scenario.submit_failure.transient
    assert scenario.resend_receipts == {"failed": False, "one": True}
    assert sim.store.get(submission_id(scenario.deliveries["failed"][1])).status == "submitted"
    assert [(e.method, e.operation()) for e in scenario.resend_exchanges] == [("GET", "get-case-events")]

    submitted, accepted = scenario.reports["three:submitted"], scenario.reports["three:accepted"]
    assert (submitted.status, submitted.status_name, submitted.final) == (0, "submitted", False)
    assert (accepted.status, accepted.status_name, accepted.final) == (1, "accepted", True)
    assert scenario.reports["zero:accepted"].status == 1
    rejected = scenario.reports["one:rejected"]
    assert (rejected.status, rejected.status_name) == (3, "rejected")
    assert rejected.problems == (PROBLEMS[0],)


# --------------------------------------------------------------------------- OpenAPI


def test_every_request_and_response_validates_against_the_official_document(
        sim: RunningFitConnectSimulator, scenario: Scenario, document: OfficialDocument) -> None:
    operations = {e.operation() for e in scenario.exchanges if e.path != "/token"}
    assert operations == set(SENDER_OPERATIONS.values())  # the check saw every operation the adapter uses
    uploads = [e for e in scenario.exchanges if e.operation() == "add-submission-attachment"]
    assert len(uploads) == 0 + 1 + 3 + 2  # "failed" uploaded twice (the re-send overwrites)
    assert_conformant(document, scenario.exchanges)
    assert sim.violations == []


def test_the_checks_catch_a_corrupted_request_and_a_corrupted_answer(
        sim: RunningFitConnectSimulator, proxy: RecordingProxy, document: OfficialDocument, clean: None) -> None:
    """Not vacuous: one field the adapter sends, corrupted on the way, is caught by both checks;
    one field of an answer, corrupted on the way back, by the test's own."""
    adapter = make_adapter(sim, proxy)
    try:
        item = delivery(1)
        adapter.prepare(item)

        def bad_request(method: str, path: str, body: bytes) -> bytes | None:
            if method != "POST" or path != "/v1/submissions":
                return None
            sent = json.loads(body)
            sent["announcedAttachments"] = ["not-a-uuid"]
            return json.dumps(sent).encode()

        proxy.rewrite_request = bad_request
        with pytest.raises(FitConnectRefused):
            adapter.new_transport_id(item)
        assert [(v.kind, v.path) for v in sim.violations] == [("request", "/v1/submissions")]
        (create,) = [e for e in proxy.recorded() if e.operation() == "create-submission"]
        assert any(err.startswith("request POST /v1/submissions") and "announcedAttachments" in err
                   for err in document.errors(create))

        def bad_answer(method: str, path: str, body: bytes) -> bytes | None:
            if method != "POST" or path != "/v1/submissions":
                return None
            answer = json.loads(body)
            answer["caseId"] = 42
            return json.dumps(answer).encode()

        proxy.reset()
        proxy.rewrite_response = bad_answer
        with pytest.raises(FitConnectMalformed):
            adapter.new_transport_id(item)
        (create,) = [e for e in proxy.recorded() if e.operation() == "create-submission"]
        assert [err.split(":")[0] for err in document.errors(create)] == ["response POST /v1/submissions 201"]
    finally:
        adapter.close()


# --------------------------------------------------------------------------- metadata


def test_every_metadata_document_validates_against_the_official_schema(
        sim: RunningFitConnectSimulator, scenario: Scenario, metadata_validator: Draft202012Validator) -> None:
    for name, (item, tid) in scenario.deliveries.items():
        stored = sim.store.get(submission_id(tid))
        assert stored is not None and stored.metadata is not None, name
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in metadata_validator.iter_errors(stored.metadata)]
        assert errors == [], name
        structure = stored.metadata["contentStructure"]
        assert structure["data"]["hash"] == {"type": "sha512",
                                             "content": hashlib.sha512(item.content.message.data).hexdigest()}
        assert [a["hash"]["content"] for a in structure["attachments"]] == [
            hashlib.sha512(p.data).hexdigest() for p in item.content.attachments]


@pytest.mark.parametrize("damage", ["hash_type", "hash_content", "attachment_id", "no_content_structure"])
def test_the_schema_check_refuses_a_damaged_metadata_document(
        sim: RunningFitConnectSimulator, scenario: Scenario, metadata_validator: Draft202012Validator,
        damage: str) -> None:
    stored = sim.store.get(submission_id(scenario.deliveries["three"][1]))
    assert stored is not None and stored.metadata is not None
    document = copy.deepcopy(stored.metadata)
    assert metadata_validator.is_valid(document)
    structure = document["contentStructure"]
    if damage == "hash_type":
        structure["data"]["hash"]["type"] = "sha256"
    elif damage == "hash_content":
        structure["attachments"][0]["hash"]["content"] = "A" * 128
    elif damage == "attachment_id":
        structure["attachments"][1]["attachmentId"] = "z" * 8 + "-zzzz" * 3 + "-" + "z" * 12  # format uuid
    else:
        del document["contentStructure"]
    assert not metadata_validator.is_valid(document)


# --------------------------------------------------------------------------- crypto


def test_the_adapters_jwes_decrypt_with_jwcrypto(sim: RunningFitConnectSimulator, scenario: Scenario) -> None:
    keys = sim.app.service.keys[DEST].encryption
    private = jc_jwk.JWK.from_pem(keys.key_path.read_bytes())  # destinations/<id>/encryption.key.pem

    def opened(token: str) -> tuple[dict[str, Any], bytes]:
        received = jc_jwe.JWE()
        received.deserialize(token, key=private)
        return json.loads(received.objects["protected"]), bytes(received.payload)

    for name, (item, tid) in scenario.deliveries.items():
        stored = sim.store.get(submission_id(tid))
        assert stored is not None and stored.encrypted_metadata and stored.encrypted_data, name
        tokens = {"metadata": stored.encrypted_metadata, "data": stored.encrypted_data, **stored.uploads}
        plain = {part: opened(token) for part, token in tokens.items()}
        for header, _ in plain.values():
            assert (header["alg"], header["enc"], header["kid"]) == ("RSA-OAEP-256", "A256GCM", keys.kid), name
        assert plain["data"][1] == item.content.message.data
        assert json.loads(plain["metadata"][1]) == stored.metadata
        assert [plain[aid][1] for aid in stored.announced] == [bytes(p.data) for p in item.content.attachments]


@pytest.mark.parametrize("flaw", sorted(FLAWED))
def test_a_flawed_destination_key_is_refused_before_anything_is_created(
        sim: RunningFitConnectSimulator, proxy: RecordingProxy, document: OfficialDocument, clean: None,
        flaw: str) -> None:
    destination, reason = FLAWED[flaw]
    adapter = make_adapter(sim, proxy)
    try:
        item = delivery(1, destination)
        with pytest.raises(KeyRefused) as refused:
            adapter.prepare(item)
        assert refused.value.reason == reason and not refused.value.transient
        with pytest.raises(KeyRefused):  # and a hub that skipped prepare() would not create one either
            adapter.new_transport_id(item)
    finally:
        adapter.close()
    assert sim.store.all(destination_id=destination) == []
    exchanges = proxy.recorded()
    assert {e.method for e in exchanges if e.path != "/token"} == {"GET"}
    assert {e.operation() for e in exchanges if e.path != "/token"} == {"get-destination-info",
                                                                        "get-destination-key"}
    # the flawed key itself breaks the document on purpose ("short": n under 4096 bits): requests only
    assert_conformant(document, exchanges, skip_response=lambda e: e.operation() == "get-destination-key")
    assert sim.violations == []
