"""deploy/k8s is watched and backed up: the ServiceMonitor scrapes every service with the
labels the alert rules select on, Strimzi's and CloudNativePG's own metrics are enabled and
scraped, PostgreSQL archives its WAL and takes scheduled base backups, and the recovery
manifest restores from where the backups go. Offline: the YAML only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def objects(*paths: Path) -> list[dict[str, Any]]:
    found = []
    for root in paths:
        for path in sorted(root.rglob("*.yaml")) if root.is_dir() else [root]:
            if path.name != "kustomization.yaml":
                found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def of_kind(kind: str, *paths: Path) -> list[dict[str, Any]]:
    return [doc for doc in objects(*(paths or (K8S,))) if doc["kind"] == kind]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector.get("matchLabels")) and selector["matchLabels"].items() <= labels.items()


def test_the_service_monitor_scrapes_every_service_with_the_labels_the_rules_use() -> None:
    (monitor,) = of_kind("ServiceMonitor")
    for service in SERVICES:
        (svc,) = [s for s in of_kind("Service") if s["metadata"]["name"] == service]
        assert selects(monitor["spec"]["selector"], svc["metadata"]["labels"]), f"{service} is not scraped"
        port_names = {port["name"] for port in svc["spec"]["ports"]}
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
        assert {"targetLabel": "part_of", "replacement": "ordermesh"} in endpoint["relabelings"]
    for other in of_kind("Service"):
        if other["metadata"]["name"] not in SERVICES:
            assert not selects(monitor["spec"]["selector"], other["metadata"].get("labels") or {})


def test_kafka_and_postgres_export_their_own_metrics_and_are_scraped() -> None:
    (kafka,) = of_kind("Kafka")
    metrics = kafka["spec"]["kafka"]["metricsConfig"]
    assert metrics["type"] == "jmxPrometheusExporter"
    reference = metrics["valueFrom"]["configMapKeyRef"]
    (rules,) = [c for c in of_kind("ConfigMap") if c["metadata"]["name"] == reference["name"]]
    assert yaml.safe_load(rules["data"][reference["key"]])["rules"], "no JMX exporter rules"
    assert "kafkaExporter" in kafka["spec"], "no consumer group lag as the broker sees it"
    (cluster,) = of_kind("Cluster")
    assert "monitoring" in cluster["spec"]
    pod_monitors = of_kind("PodMonitor")
    kafka_pod = {"strimzi.io/cluster": kafka["metadata"]["name"], "strimzi.io/kind": "Kafka"}
    pg_pod = {"cnpg.io/cluster": cluster["metadata"]["name"]}
    for labels, port in ((kafka_pod, "tcp-prometheus"), (pg_pod, "metrics")):
        matching = [m for m in pod_monitors if selects(m["spec"]["selector"], labels)]
        assert matching, f"no PodMonitor for pods labelled {labels}"
        assert any(e["port"] == port for m in matching for e in m["spec"]["podMetricsEndpoints"])


def test_postgres_archives_its_wal_takes_nightly_backups_and_the_recovery_reads_them() -> None:
    (cluster,) = of_kind("Cluster")
    store = cluster["spec"]["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://")
    assert cluster["spec"]["backup"]["retentionPolicy"]
    (scheduled,) = of_kind("ScheduledBackup")
    assert scheduled["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    secrets = {e["spec"]["target"]["name"]: e for e in of_kind("ExternalSecret")}
    for credential in store["s3Credentials"].values():
        keys = {item["secretKey"] for item in secrets[credential["name"]]["spec"]["data"]}
        assert credential["key"] in keys, f"{credential} resolves to nothing"

    (recovery,) = of_kind("Cluster", ROOT / "deploy" / "recovery")
    source = recovery["spec"]["bootstrap"]["recovery"]["source"]
    (external,) = [c for c in recovery["spec"]["externalClusters"] if c["name"] == source]
    assert external["barmanObjectStore"]["destinationPath"] == store["destinationPath"]
    assert external["barmanObjectStore"]["serverName"] == cluster["metadata"]["name"]
    assert recovery["metadata"]["name"] != cluster["metadata"]["name"], "recover into a new cluster"
    assert recovery["spec"]["imageName"] == cluster["spec"]["imageName"]
