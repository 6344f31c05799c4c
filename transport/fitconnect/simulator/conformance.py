"""Every request and response against the official Submission API document (openapi-core).

The document is loaded once; its ``servers`` are replaced by a template that matches any
``scheme://host:port``, so the paths match the simulator's loopback URL. ``application/jose`` bodies
(attachments, SETs) are handed to the schema as the strings they are, RFC 7807 problems as JSON. The spec's OAuth2 scheme is
answered by a provider that only reads the bearer token (the simulator checks it itself, before).
Violations are recorded (``violations``, thread-safe) and logged without content.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.datatypes import RequestParameters
from openapi_core.security.factories import SecurityProviderFactory
from openapi_core.security.providers import BaseProvider
from openapi_core.templating.media_types.exceptions import MediaTypeNotFound
from werkzeug.wrappers import Request, Response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Violation:
    """A request or response that the official document does not allow."""

    kind: str  # "request" | "response"
    method: str
    path: str
    status: int | None
    message: str


class RequestInvalid(Exception):
    """The request breaks the document; ``status`` 415 for a wrong media type, else 400."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _BearerProvider(BaseProvider):
    def __call__(self, parameters: RequestParameters) -> Any:
        return parameters.header.get("Authorization")


class _Providers(SecurityProviderFactory):
    PROVIDERS = {**SecurityProviderFactory.PROVIDERS, "oauth2": _BearerProvider}  # noqa: RUF012


def _jose(value: bytes | str) -> str:
    return value.decode("ascii", errors="replace") if isinstance(value, bytes) else value


class SpecChecker:
    """Checks requests and responses against one OpenAPI document and keeps what broke it."""

    def __init__(self, document: Path) -> None:
        with document.open(encoding="utf-8") as stream:
            spec = yaml.safe_load(stream)
        spec["servers"] = [{"url": "{scheme}://{authority}", "variables": {
            "scheme": {"default": "http"}, "authority": {"default": "127.0.0.1"}}}]
        config = Config(security_provider_factory=_Providers(),
                        extra_media_type_deserializers={"application/jose": _jose,
                                                        "application/problem+json": json.loads})
        self._api = OpenAPI.from_dict(spec, config=config)
        self._lock = threading.Lock()
        self._violations: list[Violation] = []

    @property
    def violations(self) -> list[Violation]:
        with self._lock:
            return list(self._violations)

    def clear(self) -> None:
        with self._lock:
            self._violations.clear()

    def check_request(self, request: Request) -> None:
        """Raise ``RequestInvalid`` (after recording it) if the document does not allow the request."""
        try:
            self._api.validate_request(WerkzeugOpenAPIRequest(request))
        except Exception as exc:  # noqa: BLE001 - openapi-core has no single root for these
            message = describe(exc)
            self._record(Violation("request", request.method, request.path, None, message))
            media = isinstance(exc.__cause__, MediaTypeNotFound) or isinstance(exc, MediaTypeNotFound)
            raise RequestInvalid(message, 415 if media else 400) from None

    def check_response(self, request: Request, response: Response) -> None:
        try:
            self._api.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
        except Exception as exc:  # noqa: BLE001
            self._record(Violation("response", request.method, request.path, response.status_code,
                                   describe(exc)))

    def _record(self, violation: Violation) -> None:
        log.warning("FIT-Connect simulator: %s %s %s breaks the OpenAPI document: %s", violation.kind,
                    violation.method, violation.path, violation.message)
        with self._lock:
            self._violations.append(violation)


def describe(exc: BaseException) -> str:
    """What is wrong, in one line: the schema errors' messages (paths, not values), or the error."""
    cause = exc.__cause__ or exc
    errors = getattr(cause, "schema_errors", None)
    if errors:
        parts = []
        for error in errors:
            where = "/".join(str(p) for p in getattr(error, "absolute_path", ())) or "(value)"
            parts.append(f"{where}: {error.validator} {error.validator_value!r}"[:200])
        return f"{type(exc).__name__}: " + "; ".join(parts)
    return f"{type(exc).__name__}: {cause}"[:500]
