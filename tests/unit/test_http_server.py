"""The simulators' shared JSON answers: names of authorities stay readable UTF-8, not \\u escapes."""

from __future__ import annotations

import json

from transport.http_server import json_response


def test_json_response_keeps_non_ascii_as_utf8() -> None:
    response = json_response({"name": "Ausländerbehörde Groß-Gerau"}, status=201, headers={"Retry-After": "1"})
    body = response.get_data()
    assert "Ausländerbehörde Groß-Gerau".encode() in body
    assert json.loads(body) == {"name": "Ausländerbehörde Groß-Gerau"}
    assert response.status_code == 201 and response.headers["Retry-After"] == "1"
    assert response.mimetype == "application/json"
