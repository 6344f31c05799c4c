"""compose.yaml, the Dockerfile and the stack's Prometheus config agree with each other and with
the repository: Debian's docker-compose accepts the file, every service has a healthcheck (or is a
documented run-once job), every file it mounts exists (or is one that scripts/stack-secrets.py
generates, which is checked by running it), the ports Prometheus scrapes are the ports the services
listen on, and no secret travels as an environment literal. No container engine needed: the
normalised output of ``docker-compose config`` is what is checked. docker-compose and promtool
missing is a failure, never a skip (scripts/bootstrap.sh installs both)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from adapters.xta2 import xta2_addressing, xta2_settings
from hub.config import load_config
from hub.keystore import KeyStore

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
STACK_TOML = ROOT / "examples" / "stack.toml"
PROM_NATIVE = ROOT / "monitoring" / "prometheus.yml"
PROM_COMPOSE = ROOT / "monitoring" / "prometheus-compose.yml"
RABBITMQ_CONF = ROOT / "monitoring" / "rabbitmq" / "rabbitmq.conf"
DATASOURCE = ROOT / "monitoring" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
RUN_ONCE_LABEL = "org.xoev-hub.run-once"
HUB_HTTP_SERVICES = ("worker-advis", "worker-auso", "tracker", "replies")  # serve /metrics


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package installed by scripts/bootstrap.sh)", pytrace=False)
    return path


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("docker-compose"), "-f", str(COMPOSE), *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stack_secrets", ROOT / "scripts" / "stack-secrets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """compose.yaml as docker-compose normalises it (anchors merged, paths absolute)."""
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(config["services"])


@pytest.fixture(scope="module")
def stack_secrets() -> ModuleType:
    return _load_script()


def _rabbitmq_ports() -> set[int]:
    keys = ("listeners.tcp.default", "management.tcp.port", "prometheus.tcp.port")
    found = {}
    for line in RABBITMQ_CONF.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() in keys:
            found[key.strip()] = int(value.strip().rsplit(":", 1)[-1])
    assert set(found) == set(keys), f"{RABBITMQ_CONF} must name every port explicitly: {keys}"
    return set(found.values())


def listen_ports(name: str, service: dict[str, Any]) -> set[int]:
    """The ports a service listens on, from the settings that make it listen there."""
    if name == "rabbitmq":
        return _rabbitmq_ports()
    command = [str(c) for c in service.get("command") or []]
    for flag in ("--http-port", "--port"):
        if flag in command:
            return {int(command[command.index(flag) + 1])}
    for arg in command:
        if arg.startswith("--web.listen-address="):
            return {int(arg.rsplit(":", 1)[1])}
    env = service.get("environment") or {}
    if "GF_SERVER_HTTP_PORT" in env:
        return {int(env["GF_SERVER_HTTP_PORT"])}
    return set()


def _is_run_once(service: dict[str, Any]) -> bool:
    test = (service.get("healthcheck") or {}).get("test")
    return not test or test == ["NONE"] or bool((service.get("healthcheck") or {}).get("disable"))


def test_docker_compose_accepts_the_file() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_every_service_has_a_healthcheck_or_is_a_documented_run_once_job(services: dict[str, Any]) -> None:
    assert {"rabbitmq", "topology", "simulator", "tracker", "replies", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        if _is_run_once(service):
            assert service.get("restart") == "no", f"{name}: no healthcheck, so it must be a run-once job (restart 'no')"
            assert (service.get("labels") or {}).get(RUN_ONCE_LABEL), f"{name}: say why in label {RUN_ONCE_LABEL}"
            waiting = [n for n, s in services.items() if name in (s.get("depends_on") or {})]
            assert waiting, f"{name}: a run-once job nobody waits for"
            for other in waiting:
                condition = services[other]["depends_on"][name]["condition"]
                assert condition == "service_completed_successfully", f"{other} waits on {name} with {condition}"
            continue
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: healthcheck {test}"
        assert service.get("restart") != "no", f"{name}: a long-running service restarts"


def test_depends_on_uses_conditions(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for other, spec in (service.get("depends_on") or {}).items():
            condition = spec.get("condition")
            expected = "service_completed_successfully" if _is_run_once(services[other]) else "service_healthy"
            assert condition == expected, f"{name} -> {other}: {condition}, expected {expected}"
    for adapter in load_config(STACK_TOML, environ={}).adapters:
        assert services[f"worker-{adapter}"]["depends_on"]["topology"]["condition"] == "service_completed_successfully"


def _mounted_files(config: dict[str, Any]) -> dict[str, Path]:
    """What compose reads from the host: bind-mount sources, secret files, the build context."""
    files: dict[str, Path] = {}
    for name, service in config["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("/"):  # a bind mount; named volumes have no path
                files[f"{name}: volume {volume}"] = Path(source)
        if "build" in service:
            files[f"{name}: build context"] = Path(service["build"]["context"])
    for secret, spec in (config.get("secrets") or {}).items():
        files[f"secret {secret}"] = Path(spec["file"])
    return files


def test_every_mounted_file_exists_or_is_generated(config: dict[str, Any], stack_secrets: ModuleType) -> None:
    generated = {ROOT / p for p in stack_secrets.GENERATED}
    used: set[Path] = set()
    files = _mounted_files(config)
    assert files, "no mounts found: the normalised config changed shape?"
    for what, path in files.items():
        assert path.is_relative_to(ROOT), f"{what}: {path} lies outside the repository"
        owner = next((g for g in generated if path == g or path.is_relative_to(g)), None)
        if owner is not None:
            used.add(owner)
            continue
        assert not path.is_relative_to(ROOT / "var"), f"{what}: var/ is local state, list it in GENERATED"
        assert path.exists(), f"{what}: {path.relative_to(ROOT)} does not exist in the repository"
    assert used == generated, f"generated but never mounted: {sorted(str(p) for p in generated - used)}"
    assert (ROOT / "Dockerfile").is_file() and (ROOT / ".dockerignore").is_file()


def test_the_script_generates_what_compose_and_the_config_need(tmp_path: Path, stack_secrets: ModuleType,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(STACK_TOML, tmp_path / "examples" / "stack.toml")
    token = stack_secrets.generate(tmp_path)
    assert token
    for rel in stack_secrets.GENERATED:
        assert (tmp_path / rel).exists(), rel
    cfg = load_config(tmp_path / "examples" / "stack.toml", environ={})
    secrets_dir = tmp_path / "var" / "stack" / "secrets"
    keys = KeyStore()
    base = tmp_path / "examples"  # the xta2 profile resolves its paths against the config's folder
    for name, ac in cfg.adapters.items():  # the encrypted signing key opens with the password file
        adapter = xta2_settings(ac.section, base, f"adapters.{name}")
        assert adapter.signing_key_password_file == secrets_dir / "signing-key.password"
        keys.signing_identity(adapter.signing_key, adapter.signing_cert, password_file=adapter.signing_key_password_file)
    for mailbox in cfg.mailboxes.values():  # compose's entrypoint fills this variable from the same secret
        monkeypatch.setenv(str(mailbox.decryption_key_password_env),
                           (secrets_dir / "signing-key.password").read_text().splitlines()[0])
        keys.private_key(mailbox.decryption_key, mailbox.decryption_key_password_env)
    readers = [xta2_addressing(a.addressing, base, f"authorities[{i}]") for i, a in enumerate(cfg.authorities)]
    for path in [*(a.certificate for a in readers), *(r.key for r in cfg.simulator.readers.values())]:
        assert path.is_file(), path
    assert cfg.tracker.tokens_file == secrets_dir / "tracker-tokens.toml"
    # the broker URL carries the password whose salted SHA-256 the RabbitMQ user definition holds
    url = urlsplit((secrets_dir / "amqp-url").read_text().strip())
    users = yaml.safe_load((secrets_dir / "rabbitmq-users.json").read_text())
    (user,) = users["users"]
    raw = base64.b64decode(user["password_hash"])
    assert user["name"] == url.username and user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert hashlib.sha256(raw[:4] + str(url.password).encode()).digest() == raw[4:]
    assert users["permissions"][0]["user"] == url.username
    before = {rel: (tmp_path / rel).stat().st_mtime_ns for rel in stack_secrets.GENERATED[1:]}
    assert stack_secrets.generate(tmp_path) is None  # idempotent: a running stack keeps its credentials
    assert before == {rel: (tmp_path / rel).stat().st_mtime_ns for rel in stack_secrets.GENERATED[1:]}


def test_rabbitmq_password_hash_matches_the_documented_format(stack_secrets: ModuleType) -> None:
    # RabbitMQ's docs give this hash of "guest" (definitions guide); ours must verify the same way
    raw = base64.b64decode("9/1i+jKFRpbTRV1PtRnzFFYibT3cEpP92JeZ8YKGtflf4e/u")
    assert hashlib.sha256(raw[:4] + b"guest").digest() == raw[4:]
    ours = base64.b64decode(stack_secrets.rabbitmq_password_hash("s3cret"))
    assert len(ours) == len(raw) and hashlib.sha256(ours[:4] + b"s3cret").digest() == ours[4:]


def _scrape_targets(prom: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(job, host, port) of every target, static or DNS-discovered."""
    out = []
    for job in prom["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                out.append((job["job_name"], host, int(port)))
        for sd in job.get("dns_sd_configs", []):
            out += [(job["job_name"], host, int(sd["port"])) for host in sd["names"]]
    return out


def test_prometheus_targets_are_compose_services_on_their_ports(services: dict[str, Any]) -> None:
    prom = yaml.safe_load(PROM_COMPOSE.read_text(encoding="utf-8"))
    targets = _scrape_targets(prom)
    for job, host, port in targets:
        assert host in services, f"{job}: target {host} is no compose service"
        assert port in listen_ports(host, services[host]), f"{job}: {host}:{port}, but {host} listens on {listen_ports(host, services[host])}"
    scraped = {host for _, host, _ in targets}
    assert set(HUB_HTTP_SERVICES) <= scraped, f"not scraped: {set(HUB_HTTP_SERVICES) - scraped}"
    assert ("rabbitmq", 15692) in {(h, p) for _, h, p in targets}


def test_prometheus_compose_config_mirrors_the_native_one(services: dict[str, Any]) -> None:
    native = yaml.safe_load(PROM_NATIVE.read_text(encoding="utf-8"))
    stack = yaml.safe_load(PROM_COMPOSE.read_text(encoding="utf-8"))
    assert stack["rule_files"] == native["rule_files"]
    assert stack.get("global") == native.get("global")

    def shape(prom: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        return {j["job_name"]: (j.get("metrics_path", "/metrics"), j.get("params")) for j in prom["scrape_configs"]}

    assert shape(stack) == shape(native), "same jobs, paths and params; only the targets differ"
    # the rule files and the config are mounted where --config.file expects them
    prometheus = services["prometheus"]
    config_file = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in prometheus["volumes"] if v.startswith("/")}
    assert mounts[config_file] == PROM_COMPOSE
    for rule in native["rule_files"]:
        assert mounts[str(Path(config_file).parent / rule)] == PROM_NATIVE.parent / rule


def test_promtool_accepts_the_stack_scrape_config() -> None:
    result = subprocess.run([_tool("promtool"), "check", "config", str(PROM_COMPOSE)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_exposed_published_and_probed_ports_are_the_listening_ones(services: dict[str, Any]) -> None:
    for name, service in services.items():
        ports = listen_ports(name, service)
        if _is_run_once(service):
            continue
        assert ports, f"{name}: no listening port found"
        exposed = {int(p) for p in service.get("expose") or []}
        assert exposed <= ports, f"{name}: exposes {exposed}, listens on {ports}"
        for published in service.get("ports") or []:  # normalised: HOST_IP:HOST_PORT:PORT/PROTO
            host_ip, _, container = str(published).split("/")[0].rpartition(":")
            assert int(container) in ports, f"{name}: publishes {published}, listens on {ports}"
            assert host_ip.startswith("127.0.0.1:"), f"{name}: publish {published} on 127.0.0.1 only"
        test = " ".join(str(t) for t in service["healthcheck"]["test"])
        if name != "rabbitmq":  # rabbitmq-diagnostics ping talks to the node, not a port
            probed = {int(p) for p in re.findall(r"(?:^|[\s:])(\d{2,5})(?=[\s/]|$)", test)}
            assert probed and probed <= ports, f"{name}: healthcheck probes {probed}, listens on {ports}"
    for name in HUB_HTTP_SERVICES:
        assert {int(p) for p in services[name]["expose"]} == listen_ports(name, services[name])


def test_scalable_workers_one_per_adapter_without_host_ports(services: dict[str, Any]) -> None:
    cfg = load_config(STACK_TOML, environ={})
    workers = {n for n in services if n.startswith("worker-")}
    assert workers == {f"worker-{a}" for a in cfg.adapters}
    for adapter in cfg.adapters:
        service = services[f"worker-{adapter}"]
        assert service["command"][:2] == ["worker", adapter]
        assert not service.get("ports"), f"worker-{adapter}: fixed host ports break --scale"
        assert "container_name" not in service
        assert service["deploy"]["replicas"] >= 1


def test_stack_config_points_at_the_compose_services(services: dict[str, Any]) -> None:
    cfg = load_config(STACK_TOML, environ={})
    simulator_ports = listen_ports("simulator", services["simulator"])
    endpoints = {f"adapters.{n}": str(a.section["endpoint"]) for n, a in cfg.adapters.items()}
    endpoints |= {f"mailboxes.{n}": m.endpoint for n, m in cfg.mailboxes.items()}
    for name, url in endpoints.items():
        endpoint = urlsplit(url)
        assert (endpoint.hostname, endpoint.port) in {("simulator", p) for p in simulator_ports}, name
    broker = urlsplit(cfg.broker.url)
    assert broker.hostname == "rabbitmq" and broker.port in listen_ports("rabbitmq", services["rabbitmq"])
    assert broker.password is None, "the broker password comes from the amqp_url secret"
    assert cfg.http.host == cfg.tracker.host == cfg.simulator.host == "0.0.0.0"
    assert cfg.simulator.port in simulator_ports
    assert cfg.tracker.port in listen_ports("tracker", services["tracker"])
    datasource = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))["datasources"][0]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port in listen_ports("prometheus", services["prometheus"])
    assert "providers" not in datasource  # dashboards come with their own provider, later


def test_no_secret_is_an_environment_literal(config: dict[str, Any]) -> None:
    secretish = re.compile(r"PASS|TOKEN|SECRET|KEY|AMQP_URL|CREDENTIAL", re.IGNORECASE)
    for name, service in config["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secretish.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), f"{name}: {key}={value}"
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), f"{name}: credentials in {key}"
        for secret in service.get("secrets") or []:
            assert secret["source"] in config["secrets"], f"{name}: undefined secret {secret['source']}"
    needs_password = {"worker-advis", "worker-auso", "replies"}  # the encrypted portal key
    for name in needs_password:
        sources = {s["source"]: s.get("target") for s in config["services"][name]["secrets"]}
        assert sources.get("signing_key_password") == "/srv/hub/var/stack/secrets/signing-key.password", name
    tracker = {s["source"]: s.get("target") for s in config["services"]["tracker"]["secrets"]}
    assert tracker.get("tracker_tokens") == "/srv/hub/var/stack/secrets/tracker-tokens.toml"


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_slim_non_root_with_healthcheck() -> None:
    steps = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    kinds = [k for k, _ in steps]
    assert steps[0][0] == "FROM" and re.fullmatch(r"python:3\.11[.\d]*-slim\S*", steps[0][1]), steps[0]
    users = [arg for kind, arg in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"last USER {users}"
    health = [arg for kind, arg in steps if kind == "HEALTHCHECK"]
    assert len(health) == 1 and "NONE" not in health[0] and "CMD" in health[0]
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    assert ("ENTRYPOINT", '["hub"]') in steps
    installs = [arg for kind, arg in steps if kind == "RUN" and "pip install" in arg]
    assert installs and not any("[test" in arg or "pytest" in arg for arg in installs)


def test_image_defaults_match_the_stack_and_keep_keys_out() -> None:
    steps = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    env = " ".join(arg for kind, arg in steps if kind == "ENV")
    port = re.search(r"HUB_HEALTH_PORT=(\d+)", env)
    assert port and int(port.group(1)) == load_config(STACK_TOML, environ={}).http.port
    assert "HUB_CONFIG=/srv/hub/examples/stack.toml" in env
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    assert "*" in ignore, ".dockerignore starts from nothing and lets in only what pip install needs"
    assert not any(line.startswith("!") and line[1:].strip("/").split("/")[0] in ("var", "tests", ".venv")
                   for line in ignore), "keys, local state and tests stay out of the build context"


def test_only_the_reply_poller_gets_the_mailbox_key_password(config: dict[str, Any]) -> None:
    """The portal key's password reaches the process environment only where mailbox decryption reads
    it (`hub replies`, decryption_key_password_env); workers read it from the secret file."""
    cfg = load_config(STACK_TOML, environ={})
    variables = {str(m.decryption_key_password_env) for m in cfg.mailboxes.values()}
    assert variables and None not in variables
    for name, service in config["services"].items():
        entrypoint = " ".join(str(part) for part in service.get("entrypoint") or [])
        environment = service.get("environment") or {}
        for variable in variables:
            assert variable not in environment, f"{name}: {variable} as an environment literal"
            if name == "replies":
                assert re.search(rf'{variable}="\$\$\(cat /srv/hub/var/stack/secrets/signing-key\.password\)"',
                                 entrypoint), f"replies must fill {variable} from the secret: {entrypoint}"
                assert f"export {variable}" in entrypoint
            else:
                assert variable not in entrypoint, f"{name} gets {variable} but decrypts no mailbox"
    sources = {s["source"]: s.get("target") for s in config["services"]["replies"]["secrets"]}
    assert sources.get("signing_key_password") == "/srv/hub/var/stack/secrets/signing-key.password"
