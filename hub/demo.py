"""The end-to-end demo: the whole pipeline on real components, then a summary.

Starts the XTA simulator, the FIT-Connect simulator and one worker process per adapter (as an
operator would), applies the topology, publishes sample applications with attachments through the
confirming publisher, follows the status events until every application is delivered or
dead-lettered, checks at the simulators that each received payload is byte-identical and verified
(XTA: signature; FIT-Connect: decrypted with the destination's key, hashes checked, no OpenAPI
violation), prints a summary and stops everything it started.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.xta2 import xta2_addressing, xta2_settings
from hub import demo_fitconnect
from hub.broker import broker_hosts, connect
from hub.config import HubConfig, PartyConfig, load_config
from hub.demo_replies import (
    DemoTokens,
    collect_replies,
    send_demo_replies,
    wait_for_tracker,
    write_demo_tokens,
)
from hub.envelope import Envelope, new_envelope
from hub.limits import SizeLimits
from hub.processes import free_port, spawn, stop_all, wait_for_http
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.reports import TRANSPORT_REPORT
from hub.samples import make_attachment, make_ozg_application
from hub.status import DEAD_LETTERED, DELIVERED, StatusEvent, events_from_message
from hub.topology import STATUS_EXCHANGE, apply_configured
from transport.content import ContentPart
from transport.security.demopki import make_test_pki
from transport.xta.metadata import Party

# the official standard sets, when they lie beside the project (the FIT-Connect simulator checks against them)
STANDARDS = Path(__file__).resolve().parents[2] / "shared" / "standards"
DEMO_PORTAL = "demo-portal"  # the app_id of the demo portal; [mailboxes.demo-portal] reads its replies
# who the demo applications name as sender when their adapter has no author (fit-connect)
DEMO_AUTHOR = PartyConfig(identifier="dbk:demo-portal", name="Demo-Portal")


def ensure_demo_pki(config: HubConfig) -> None:
    """Create the throwaway keys and certificates the demo config points to (idempotent)."""
    base = config.source.parent if config.source else None
    xta = {name for name, a in config.adapters.items() if a.profile == "xta2"}
    paths: list[Path] = [xta2_settings(config.adapters[name].section, base, f"adapters.{name}").signing_key
                         for name in xta]
    paths += [xta2_addressing(a.addressing, base, f"authorities[{a.id}]").certificate
              for a in config.authorities if a.adapter in xta]
    paths += [r.key for r in config.simulator.readers.values()]
    folders = {p.parent for p in paths}
    for folder in folders:
        names = sorted({p.name.split(".")[0] for p in paths if p.parent == folder and p.name.split(".")[0] != "ca"})
        make_test_pki(folder, names)


@dataclass
class _Tracker:
    expected: set[str]
    published_at: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, StatusEvent] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)  # message id -> traffic light
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)

    def record(self, event: StatusEvent) -> None:
        if event.message_id not in self.expected:
            return
        if event.event == TRANSPORT_REPORT:
            with self.lock:
                self.reports[event.message_id] = str(event.detail.get("traffic_light", "?"))
            return
        if event.event not in (DELIVERED, DEAD_LETTERED):
            return
        with self.lock:
            self.outcomes[event.message_id] = event
            if len(self.outcomes) >= len(self.expected):
                self.done.set()


def _follow_status(config: HubConfig, tracker: _Tracker, bound: threading.Event, stop: threading.Event) -> None:
    connection = connect(config.broker, "hub-demo-status")
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, STATUS_EXCHANGE, routing_key=f"{DEMO_PORTAL}.#")

    def on_event(ch: Any, method: Any, props: Any, body: bytes) -> None:
        for event in events_from_message(props.content_type, body):  # a single event or a status batch
            tracker.record(event)
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_event)
    bound.set()
    while not stop.is_set():
        connection.process_data_events(time_limit=0.2)
    connection.close()


def _applications(config: HubConfig, count: int, run: str) -> list[Envelope]:
    authorities = list(config.authorities)
    envelopes = []
    for i in range(count):
        authority = authorities[i % len(authorities)]
        author = config.adapters[authority.adapter].author or DEMO_AUTHOR
        seed = int(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{i}").int % (2**62))
        attachment, filename, content_type = make_attachment(seed)
        xml, message_id = make_ozg_application(
            reader=Party(authority.id, authority.name, authority.addressing.get("reader_category", "Ausländerbehörde")),
            author=Party(author.identifier, author.name, author.category),
            seed=seed, attachment=attachment)
        envelopes.append(new_envelope(
            destination=authority.id, message_type="OZG.Antrag.130101", message=xml, portal=DEMO_PORTAL,
            message_id=message_id, filename="antrag.xml", test=True,
            attachments=(ContentPart(attachment, content_type, filename),)))
    return envelopes


def _simulator_messages(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_sim/messages", timeout=30) as resp:
        messages: list[dict[str, Any]] = json.loads(resp.read())
    return messages


def run_demo(config_path: Path, *, count: int, timeout: float, environ: Mapping[str, str]) -> int:
    base_config = load_config(config_path, environ=environ)
    ensure_demo_pki(base_config)
    sim_port = free_port()
    env = dict(environ)
    env["HUB_CONFIG"] = str(Path(config_path).resolve())
    env["HUB_SIMULATOR__PORT"] = str(sim_port)
    for name, adapter in base_config.adapters.items():
        if adapter.profile == "xta2":
            env[f"HUB_ADAPTERS__{name.upper()}__ENDPOINT"] = f"http://127.0.0.1:{sim_port}/xta"
    fit_state = demo_fitconnect.prepare(base_config)
    fit_port = free_port()
    env.update(demo_fitconnect.endpoint_overrides(base_config, fit_port))
    fit_url = f"http://127.0.0.1:{fit_port}"
    for portal in base_config.mailboxes:
        env[f"HUB_MAILBOXES__{portal.upper()}__ENDPOINT"] = f"http://127.0.0.1:{sim_port}/xta"
    tracker_port = free_port()
    env["HUB_TRACKER__PORT"] = str(tracker_port)
    config = load_config(config_path, environ=env)
    sim_url = f"http://127.0.0.1:{sim_port}"

    print(f"demo: broker {broker_hosts(config.broker)}, {len(config.authorities)} authorities on "
          f"{len(config.adapters)} adapters, {count} applications", flush=True)
    connection = connect(config.broker, "hub-demo")  # fails early with a hint if RabbitMQ is down
    channel = connection.channel()
    channel.confirm_delivery()
    report = apply_configured(channel, config)
    connection.close()
    print(f"topology: {report.summary()}", flush=True)

    procs: list[subprocess.Popen[bytes]] = []
    stop_status = threading.Event()
    log_dir = Path(config_path).resolve().parent.parent / "var" / "demo" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(name: str, args: list[str], ready_url: str, timeout: float) -> None:
        """Start ``hub <args>`` and wait until ``ready_url`` answers 200."""
        log = log_dir / f"{name}.log"
        procs.append(spawn([sys.executable, "-m", "hub", *args], env=env, log=log))
        wait_for_http(ready_url, timeout, process=procs[-1], name=name, log=log)

    print(f"logs of the processes: {log_dir}/", flush=True)
    try:
        start("simulator", ["simulator"], f"{sim_url}/_sim/stats", 30)
        print(f"simulator: {sim_url}/xta", flush=True)
        if fit_state is not None:  # its first start generates 4096-bit keys: allow for it
            args = demo_fitconnect.simulator_args(config, fit_port, fit_state, STANDARDS)
            start("fit-connect-simulator", args, f"{fit_url}/_simulator/health", 180)
            checked = "checked against the official OpenAPI document" if "--openapi" in args else "unchecked"
            print(f"FIT-Connect simulator: {fit_url} (requests {checked})", flush=True)
        metrics_urls = {}
        for name in config.adapters:
            port = free_port()
            start(f"worker-{name}", ["worker", name, "--http-port", str(port)],
                  f"http://127.0.0.1:{port}/readyz", 60)
            metrics_urls[name] = f"http://127.0.0.1:{port}/metrics"
            print(f"worker {name}: ready, metrics at {metrics_urls[name]}", flush=True)

        tokens = None
        if config.tracker.tokens_file is not None:
            tokens = write_demo_tokens(config.tracker.tokens_file, DEMO_PORTAL)
            start("tracker", ["tracker"], f"http://127.0.0.1:{tracker_port}/healthz", 60)
            print(f"tracker: http://127.0.0.1:{tracker_port}/ui/ (store {config.tracker.store})", flush=True)
        if DEMO_PORTAL in config.mailboxes:
            replies_port = free_port()
            start("replies", ["replies", "--http-port", str(replies_port)],
                  f"http://127.0.0.1:{replies_port}/healthz", 60)
            print(f"return channel: reading the mailbox of {config.mailboxes[DEMO_PORTAL].account.identifier}",
                  flush=True)

        run = uuid.uuid4().hex[:8]
        envelopes = _applications(config, count, run)
        tracker = _Tracker({e.message_id for e in envelopes})
        bound = threading.Event()
        follower = threading.Thread(target=_follow_status, args=(config, tracker, bound, stop_status), daemon=True)
        follower.start()
        bound.wait(15)

        started = time.time()
        limits = SizeLimits.from_config(config)
        with ConfirmingPublisher(config.broker, "hub-demo-publisher") as publisher:
            futures = []
            for e in envelopes:
                tracker.published_at[e.message_id] = time.time()
                futures.append(publish_envelope(publisher, e, limits))
            for f in futures:
                f.result(timeout=120)
        print(f"published {count} applications (all confirmed) in {time.time() - started:.2f}s", flush=True)

        deadline = time.monotonic() + timeout
        while not tracker.done.wait(1.0):
            with tracker.lock:
                c = Counter(ev.event for ev in tracker.outcomes.values())
            print(f"  progress: {c[DELIVERED]}/{count} delivered, {c[DEAD_LETTERED]} dead-lettered", flush=True)
            if time.monotonic() > deadline:
                print("timeout waiting for deliveries", flush=True)
                break
        delivered = sum(1 for ev in tracker.outcomes.values() if ev.event == DELIVERED)
        report_deadline = time.monotonic() + 30
        while len(tracker.reports) < delivered and time.monotonic() < report_deadline:
            time.sleep(0.5)  # the workers poll getTransportReport until each report is final
        ok = _summarise(config, envelopes, tracker, started, sim_url, fit_url if fit_state else None)
        ok = _return_channel(config, envelopes, tracker, tokens, f"http://127.0.0.1:{tracker_port}",
                             sim_url, started) and ok
        print("demo " + ("succeeded" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        stop_status.set()
        stop_all(procs)


def _return_channel(config: HubConfig, envelopes: list[Envelope], tracker: _Tracker, tokens: DemoTokens | None,
                    tracker_url: str, sim_url: str, started: float) -> bool:
    """Replies from the authorities back to the portal, and the tracker's view of this run."""
    ok = True
    with tracker.lock:
        delivered = [e for e in envelopes if e.message_id in tracker.outcomes
                     and tracker.outcomes[e.message_id].event == DELIVERED]
    replied: str | None = None
    sent: dict[str, str] = {}
    xta = {a.id for a in config.authorities if config.adapters[a.adapter].profile == "xta2"}
    answered = [e for e in delivered if e.destination in xta]  # the return channel is XTA's MsgBox
    if DEMO_PORTAL in config.mailboxes and answered:
        sent = send_demo_replies(config, DEMO_PORTAL, f"{sim_url}/xta", answered)
        received = collect_replies(config, DEMO_PORTAL, set(sent), timeout=120)
        linked = sum(1 for h in received.values() if h.get("x-hub-application-ref"))
        print(f"  replies:          {len(sent)} sent by the authorities, {len(set(sent) & received.keys())} "
              f"received at hub.replies.{DEMO_PORTAL} ({linked} naming their application)")
        ok = set(sent) <= received.keys()
        replied = next(iter(sent.values()), None)
    if tokens is not None:
        counts, trace = wait_for_tracker(tracker_url, tokens.portal, delivered=len(delivered), replies=set(sent),
                                         message_id=replied, since=started, timeout=120)
        shown = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if n) or "nothing"
        print(f"  tracker:          {shown} (this run, as the portal's token sees it)")
        ok = ok and counts.get("delivered", 0) >= len(delivered)
        if trace is not None:
            print(f"  timeline of {trace['application']['message_id']}:")
            for entry in trace["timeline"]:
                extra = entry["detail"].get("traffic_light") or entry["detail"].get("message_type") or ""
                print(f"    {time.strftime('%H:%M:%S', time.localtime(entry['at']))}  {entry['event']:<18} {extra}")
            ok = ok and any(e["event"] == "reply_received" for e in trace["timeline"])
        elif replied is not None:
            print("  tracker:          the replied application's timeline was not found")
            ok = False
    print("return channel and tracking " + ("succeeded" if ok else "FAILED"))
    return ok


def _summarise(config: HubConfig, envelopes: list[Envelope], tracker: _Tracker, started: float, sim_url: str,
               fit_url: str | None) -> bool:
    with tracker.lock:
        outcomes = dict(tracker.outcomes)
    delivered = [e for e in envelopes if e.message_id in outcomes and outcomes[e.message_id].event == DELIVERED]
    dead = [e for e in envelopes if e.message_id in outcomes and outcomes[e.message_id].event == DEAD_LETTERED]
    latencies = sorted(outcomes[e.message_id].at - tracker.published_at[e.message_id] for e in delivered)
    last = max((outcomes[e.message_id].at for e in delivered), default=started)

    fit = set(demo_fitconnect.adapters(config))
    fit_authorities = {a.id for a in config.authorities if a.adapter in fit}
    received = _simulator_messages(sim_url)
    by_digest = {m["parts"][0]["sha256"]: m for m in received if m.get("parts")}
    identical = verified = violations = 0
    if fit_url is not None:  # FIT-Connect: decrypted by the destination's key, hashes checked at submit
        identical, verified, violations = demo_fitconnect.check(
            fit_url, [e for e in delivered if e.destination in fit_authorities])
    for e in delivered:
        if e.destination in fit_authorities:
            continue
        m = by_digest.get(e.content.message.sha256)
        if m is None:
            continue
        digests = [p["sha256"] for p in m["parts"]]
        if digests == [p.sha256 for p in e.content.parts]:
            identical += 1
        verified += bool(m.get("verified"))

    print("\nsummary")
    per_authority = Counter(e.destination for e in delivered)
    for a in config.authorities:
        print(f"  {a.id:<12} {a.name:<40} adapter {a.adapter:<10} delivered {per_authority[a.id]}")
    print(f"  delivered:        {len(delivered)}/{len(envelopes)}")
    print(f"  dead-lettered:    {len(dead)}")
    print(f"  at the simulators: {identical} byte-identical (message + attachment), {verified} verified "
          "(XTA: signature checked; FIT-Connect: decrypted, hashes checked, accepted)")
    if fit_url is not None:
        print(f"  FIT-Connect:      {violations} OpenAPI/metadata-schema violations at the simulator")
    with tracker.lock:
        lights = Counter(tracker.reports.values())
    print(f"  transport reports: {', '.join(f'{n} {light}' for light, n in sorted(lights.items())) or 'none'}")
    if latencies:
        p50 = statistics.median(latencies)
        p95 = latencies[min(len(latencies) - 1, round(0.95 * len(latencies)) - 1)]
        print(f"  latency p50/p95:  {p50 * 1000:.0f} ms / {p95 * 1000:.0f} ms (publish -> delivered)")
        print(f"  throughput:       {len(delivered) / max(last - started, 1e-6):.1f} applications/s")
    ok = (len(delivered) == len(envelopes) and identical == len(envelopes) and verified == len(envelopes)
          and lights.get("green", 0) == len(envelopes) and violations == 0)
    return ok


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(Path(os.environ.get("HUB_CONFIG", "examples/demo.toml")), count=200, timeout=300,
                      environ=dict(os.environ)))
