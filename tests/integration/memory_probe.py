"""Child process of test_worker_memory.py: one message through the worker path in a fresh process.

    python -m tests.integration.memory_probe CONFIG_JSON BODY_FILE PROPERTIES_JSON

Builds the pipeline (as `hub worker` does), warms it with one small delivery, reads the AMQP body
from BODY_FILE, resets the peak RSS (/proc/self/clear_refs), runs ``decode`` + ``process`` and
prints one JSON line: the growth of the peak RSS above the RSS before, and the outcome.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def main(argv: list[str]) -> None:
    import pika

    from hub.config import parse_config
    from hub.envelope import new_envelope
    from hub.errors import HubError
    from hub.runtime import build_pipeline
    from hub.samples import make_ozg_application
    from transport.xta.metadata import Party

    config = parse_config(json.loads(argv[0]), base=Path("/"), environ={})
    pipeline = build_pipeline(config, "alpha")
    xml, message_id = make_ozg_application(reader=Party("azr:000100", "ABH"), author=Party("alp:000001"), seed=1)
    warm = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", message=xml, portal="probe",
                        message_id=message_id)
    pipeline.process(pipeline.decode(warm.properties(), warm.body()))  # HTTP session, keys, lookup cache
    body = Path(argv[1]).read_bytes()
    properties = pika.BasicProperties(**json.loads(argv[2]))
    gc.collect()
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    try:
        pipeline.process(pipeline.decode(properties, body))
        outcome = "delivered"
    except HubError as exc:
        outcome = exc.reason
    print(json.dumps({"growth": _status("VmHWM") - before, "outcome": outcome}))
    pipeline.close()


if __name__ == "__main__":
    main(sys.argv[1:])
