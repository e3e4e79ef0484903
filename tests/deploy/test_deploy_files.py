"""The deploy files (compose, Kubernetes, systemd, Dockerfile) agree with the code they start."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer.main
import yaml
from pydantic_settings import BaseSettings

from broker.metrics import BrokerMetrics
from broker.settings import BrokerSettings
from latentmas_mesh.cli import _register_subcommands, app
from latentmas_mesh.gateway.settings import GatewaySettings
from latentmas_mesh.protocol.ledger import LEDGER_SERVICE
from latentmas_mesh.services.alignment_settings import AlignmentSettings
from latentmas_mesh.services.ledger_settings import LedgerSettings
from latentmas_mesh.services.market_settings import MarketSettings
from latentmas_mesh.transport import TransportSettings
from workers import WORKER_KINDS
from workers.settings import WorkerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS: tuple[type[BaseSettings], ...] = (
    AlignmentSettings,
    BrokerSettings,
    GatewaySettings,
    LedgerSettings,
    MarketSettings,
    TransportSettings,
    WorkerSettings,
)
SHELL_ONLY = {"LATENTMAS_WORKER_CONCURRENCY"}
"""Read by the systemd unit's own command line (`--concurrency ${...}`), not by a settings class."""


def _yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _commands() -> list[list[str]]:
    """Every `latentmas` argument list the deploy files run."""
    commands = []
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    commands += [service["command"] for service in compose["services"].values()]
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in _yaml_documents(path):
            if doc.get("kind") == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    commands.append(container["args"])
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    commands.append(json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1)))
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        line = re.search(r"^ExecStart=\S+/latentmas (.*)$", unit.read_text(), re.M).group(1)
        line = line.replace("%i", "echo").replace("${LATENTMAS_WORKER_CONCURRENCY}", "2")
        commands.append(shlex.split(line))
    return commands


def _env_file() -> dict[str, str]:
    lines = (DEPLOY / "systemd" / "latentmas.env").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return dict(pairs)


def _commented_settings(name: str) -> dict[str, str]:
    """The `# LATENTMAS_X=value` examples of a systemd env file, as if uncommented."""
    text = (DEPLOY / "systemd" / name).read_text()
    return dict(re.findall(r"^# (LATENTMAS_[A-Z0-9_]+)=(\S+)$", text, re.M))


def test_every_command_in_the_deploy_files_parses_with_the_cli():
    """Each command's subcommand, options and worker kind exist, and its values validate."""
    _register_subcommands()
    group = typer.main.get_command(app)
    commands = _commands()

    assert len(commands) >= 6
    for name, *rest in commands:
        context = group.make_context("latentmas", [name])
        command = group.get_command(context, name)
        assert command is not None, name
        parsed = command.make_context(name, rest, parent=context)  # raises on a bad option
        if name == "worker":
            assert parsed.params["kind"] in WORKER_KINDS


def test_every_latentmas_variable_in_the_deploy_files_is_a_setting():
    """Settings ignore unknown variables, so a misspelt one in a deploy file would do nothing."""
    known = {
        f"LATENTMAS_{field.upper()}" for settings in SETTINGS for field in settings.model_fields
    }
    named = set()
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            named |= set(re.findall(r"LATENTMAS_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))

    assert len(named) >= 8
    assert set() == named - known - SHELL_ONLY


def test_systemd_environment_file_configures_broker_and_worker(monkeypatch):
    """The env file's values validate and reach the broker's and the worker's settings."""
    env = _env_file()
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    broker, worker = BrokerSettings(), WorkerSettings()

    assert ["tcp://0.0.0.0:5555"] == broker.bind
    assert int(env["LATENTMAS_METRICS_PORT"]) == broker.metrics_port
    assert int(env["LATENTMAS_HEARTBEAT_MS"]) == broker.heartbeat_ms == worker.heartbeat_ms
    assert int(env["LATENTMAS_LIVENESS"]) == broker.liveness == worker.liveness
    assert env["LATENTMAS_CONNECT"] == worker.connect


@pytest.mark.parametrize("path", sorted((DEPLOY / "kubernetes").glob("*.yaml")), ids=str)
def test_kubernetes_manifests_are_yaml_with_kind_and_name(path):
    """Each manifest document names its kind; the adapter rules file is the adapter's config."""
    documents = _yaml_documents(path)

    assert documents
    for doc in documents:
        assert "externalRules" in doc or (doc["kind"] and doc["metadata"]["name"])


def test_autoscaler_scales_on_a_metric_the_broker_exports():
    """The HPA's and the adapter's metric is the broker's queue-depth gauge, by service."""
    exported = {metric.name for metric in BrokerMetrics().registry.collect()}
    workers = _yaml_documents(DEPLOY / "kubernetes" / "workers.yaml")
    hpa = next(doc for doc in workers if doc["kind"] == "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    rules = _yaml_documents(DEPLOY / "kubernetes" / "prometheus-adapter-rules.yaml")[0]

    assert metric["name"] in exported
    assert "service" in metric["selector"]["matchLabels"]
    assert metric["name"] == rules["externalRules"][0]["name"]["as"]


def test_key_commands_in_the_deploy_files_parse_with_the_cli():
    """Each `latentmas keys ...` the deploy docs show exists with its options (--service)."""
    _register_subcommands()
    group = typer.main.get_command(app)
    context = group.make_context("latentmas", ["keys"])
    keys = group.get_command(context, "keys")
    shown = [
        shlex.split(command)
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for command in re.findall(r"`latentmas keys ([^`]+)`", path.read_text())
    ]

    assert any("--service" in command for command in shown)
    for command in shown:
        keys.make_context("keys", command, parent=context)  # raises on a bad option


def test_curve_examples_bind_each_worker_kind_to_its_own_key_and_trust_the_ledgers():
    """Uncommented, the systemd CURVE examples give the ledger pool its own key (not the
    broker's) and point ledger clients at the broker's folder of keys for the ledger."""
    shared = _commented_settings("latentmas.env")
    broker = _commented_settings("broker.env")
    ledger = _commented_settings("worker-ledger.env")

    assert Path(broker["LATENTMAS_CURVE_WORKER_KEYS_DIR"]) / LEDGER_SERVICE == Path(
        shared["LATENTMAS_LEDGER_KEYS_DIR"]
    )
    assert "LATENTMAS_CURVE_SECRET_KEY_FILE" not in shared
    assert broker["LATENTMAS_CURVE_SECRET_KEY_FILE"] != ledger["LATENTMAS_CURVE_SECRET_KEY_FILE"]
    units = {p.name: p.read_text() for p in (DEPLOY / "systemd").glob("*.service")}
    assert "/etc/latentmas/broker.env" in units["latentmas-broker.service"]
    assert "/etc/latentmas/worker-%i.env" in units["latentmas-worker@.service"]


def test_broker_liveness_probe_is_the_cheap_health_endpoint():
    """A metrics flood once made GET /metrics take 16 s: the probe must not depend on a scrape."""
    from broker.http import HEALTH_PATH

    broker = next(
        doc
        for doc in _yaml_documents(DEPLOY / "kubernetes" / "broker.yaml")
        if doc["kind"] == "Deployment"
    )
    container = broker["spec"]["template"]["spec"]["containers"][0]

    assert HEALTH_PATH == container["livenessProbe"]["httpGet"]["path"]
