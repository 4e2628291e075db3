"""docker-compose.yml checked offline (no Docker here): every reference resolves (services,
volumes, files mounted from the repository), published ports do not collide and stay on the
loopback interface, and the observability services are wired to each other and to the
OrderMesh services: Prometheus scrapes each service on its port, Grafana reads Prometheus and
Jaeger and loads the dashboards from where they are mounted, the services send spans to the
collector, which forwards them to Jaeger."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
# Ports the third-party images listen on, by image name (their documented defaults).
IMAGE_PORTS = {
    "prom/prometheus": {9090},
    "grafana/grafana": {3000},
    "jaegertracing/all-in-one": {16686, 4317, 4318},
    "apache/kafka": {9092, 9093, 19092},
    "postgres": {5432},
}


@cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def app_port(service: str) -> int:
    return int(services()[service]["environment"][f"OM_{service.upper()}_HTTP_PORT"])


def listening(service: str) -> set[int]:
    """The ports a compose service listens on inside the network."""
    spec = services()[service]
    if service in SERVICES:
        return {app_port(service)}
    if service == "otel-collector":
        config = yaml.safe_load((OBSERVABILITY / "otel-collector.yaml").read_text())
        return {
            int(p["endpoint"].rsplit(":", 1)[1]) for p in config["receivers"]["otlp"]["protocols"].values()
        }
    image = spec["image"].split(":")[0]
    return IMAGE_PORTS[image]


def mounts(service: str) -> dict[str, str]:
    """Bind mounts of the repository's files: container path -> repository path."""
    found = {}
    for volume in services()[service].get("volumes") or []:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = source
    return found


def assert_reaches(url: str, where: str) -> None:
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    assert parsed.hostname in services(), f"{where}: {url} names no compose service"
    assert parsed.port in listening(parsed.hostname), (
        f"{where}: {parsed.hostname} does not listen on {parsed.port} ({sorted(listening(parsed.hostname))})"
    )


def test_dependencies_and_named_volumes_exist() -> None:
    declared_volumes = set(compose().get("volumes") or {})
    for name, spec in services().items():
        depends = spec.get("depends_on") or []
        for dependency in depends if isinstance(depends, list) else list(depends):
            assert dependency in services(), f"{name} depends on {dependency!r}, no such service"
        for volume in spec.get("volumes") or []:
            source = volume.split(":")[0]
            if not source.startswith(("./", "/")):
                assert source in declared_volumes, f"{name}: volume {source!r} not declared"


@pytest.mark.parametrize("service", sorted(services()))
def test_every_file_mounted_from_the_repository_exists(service: str) -> None:
    for target, source in mounts(service).items():
        assert (ROOT / source).exists(), f"{service}: mounts {source} at {target}, which does not exist"


def test_published_ports_stay_on_loopback_and_do_not_collide() -> None:
    fixed: dict[str, str] = {}
    for name, spec in services().items():
        for mapping in spec.get("ports") or []:
            text = str(mapping)
            assert text.startswith("127.0.0.1:"), f"{name}: {text} is published on every interface"
            host = text.split(":")[1]
            if re.fullmatch(r"\d+", host):
                assert host not in fixed, f"host port {host} of {name} is also {fixed[host]}'s"
                fixed[host] = name
            container = int(text.rsplit(":", 1)[1])
            assert container in listening(name), f"{name} publishes {container}, where nothing listens"


def test_prometheus_scrapes_every_service_on_its_port_and_loads_the_rules() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service in SERVICES:
        assert service in jobs, f"prometheus.yml does not scrape {service}"
        (discovery,) = jobs[service]["dns_sd_configs"]
        assert discovery["names"] == [service]
        assert int(discovery["port"]) == app_port(service), f"{service} scraped on the wrong port"
        relabel = jobs[service]["relabel_configs"]
        assert {"target_label": "part_of", "replacement": "ordermesh"} in relabel
    mounted = mounts("prometheus")
    assert mounted["/etc/prometheus/prometheus.yml"] == "./deploy/observability/prometheus.yml"
    command = " ".join(services()["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    for rule_file in config["rule_files"]:
        in_container = str(Path("/etc/prometheus") / rule_file.split()[0])
        assert in_container in mounted, f"rule file {in_container} is not mounted"


def test_grafana_reads_prometheus_and_jaeger_and_loads_the_mounted_dashboards() -> None:
    mounted = mounts("grafana")
    provisioning = ROOT / mounted["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "ordermesh.yaml").read_text())["datasources"]
    kinds = {source["type"]: source for source in datasources}
    assert_reaches(kinds["prometheus"]["url"], "Grafana's Prometheus data source")
    assert urlparse(kinds["prometheus"]["url"]).hostname == "prometheus"
    assert_reaches(kinds["jaeger"]["url"], "Grafana's Jaeger data source")
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "ordermesh.yaml").read_text())["providers"]
    dashboards_dir = mounted[provider["options"]["path"]]
    dashboards = list((ROOT / dashboards_dir).glob("*.json"))
    assert dashboards, f"no dashboard in {dashboards_dir}"
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        assert variable["query"] in kinds, (
            f"{path.name}: a {variable['query']} data source is not provisioned"
        )
    home = services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"]
    assert (ROOT / dashboards_dir / Path(home).name).exists()


def test_services_send_spans_to_the_collector_which_forwards_them_to_jaeger() -> None:
    for service in SERVICES:
        env = services()[service]["environment"]
        assert env.get("OTEL_TRACES_EXPORTER") == "otlp", f"{service} exports no spans"
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert_reaches(endpoint, f"{service}'s OTEL_EXPORTER_OTLP_ENDPOINT")
        assert urlparse(endpoint).hostname == "otel-collector"
        http = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").startswith("http")
        assert (urlparse(endpoint).port == 4318) == http, f"{service}: OTLP protocol and port disagree"
    mounted = mounts("otel-collector")
    config_path = next(
        arg.split("=", 1)[1] for arg in services()["otel-collector"]["command"] if "--config" in arg
    )
    config = yaml.safe_load((ROOT / mounted[config_path]).read_text())
    for pipeline in config["service"]["pipelines"].values():
        for exporter in pipeline["exporters"]:
            assert_reaches(config["exporters"][exporter]["endpoint"], f"collector exporter {exporter}")
        for receiver in pipeline["receivers"]:
            assert receiver in config["receivers"]
    assert services()["jaeger"]["environment"].get("COLLECTOR_OTLP_ENABLED") == "true"
