"""deploy/observability: the alert rules pass promtool (syntax and their unit tests in
alerts.test.yaml), the Prometheus configuration is valid, every query of the Grafana dashboard
parses, every dashboard and rule expression names only metrics (and labels) the services
export, and the PrometheusRule of deploy/k8s carries exactly alerts.yaml's rules.

promtool comes from Debian's prometheus package, unpacked into .local/tools by `make promtool`
(which `make test` runs); OM_PROMTOOL names another one."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

import services
from libs.runtime.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yaml"
DASHBOARDS = sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json"))
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheus-rule.yaml"

# Series Prometheus makes itself rather than scrapes.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
# Labels the scrape adds to every series (prometheus.yml and the ServiceMonitor).
TARGET_LABELS = {"job", "instance", "part_of"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
}  # fmt: skip


def promtool() -> str:
    found = os.environ.get("OM_PROMTOOL") or shutil.which(
        "promtool", path=str(ROOT / ".local" / "tools" / "bin")
    )
    found = found or shutil.which("promtool")
    assert found, "promtool not found: run `make promtool` (Debian's prometheus package, into .local/tools)"
    return found


def run_promtool(*args: str, cwd: Path = OBSERVABILITY) -> str:
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


# --- what the services export --------------------------------------------------------------------


@cache
def exported_metrics() -> dict[str, frozenset[str]]:
    """Series name -> label names, from the registry every service process serves at /metrics
    (each service's app built in this process, as it is at start-up, without connecting)."""
    for module in pkgutil.iter_modules(services.__path__):
        bootstrap = importlib.import_module(f"services.{module.name}.bootstrap")
        bootstrap.build_app(RuntimeSettings(topic_namespace=""))
    labels_by_family: dict[str, frozenset[str]] = {}
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 - the label names
        for family in collector.describe() if hasattr(collector, "describe") else []:
            labels_by_family[family.name] = frozenset(getattr(collector, "_labelnames", ()))
    names: dict[str, frozenset[str]] = {}
    exposition = generate_latest(REGISTRY).decode()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        base = family.removesuffix("_total")
        labels = labels_by_family.get(base, labels_by_family.get(family, frozenset()))
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("", "_sum", "_count", "_created")}.get(kind, ("",))  # fmt: skip
        for suffix in suffixes:
            names[base + suffix if kind == "counter" else family + suffix] = labels | (
                {"le"} if suffix == "_bucket" else frozenset()
            )
    return names


# --- the expressions -------------------------------------------------------------------------------


def dashboard_targets() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        panels = list(dashboard["panels"])
        for panel in panels:
            panels.extend(panel.get("panels") or [])
            for target in panel.get("targets") or []:
                yield f"{path.name}: {panel['title']}", target["expr"]
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            if variable.get("type") == "query":
                yield (
                    f"{path.name}: variable {variable['name']}",
                    query["query"] if isinstance(query, dict) else query,
                )
        for annotation in dashboard.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                yield f"{path.name}: annotation {annotation['name']}", annotation["expr"]


def rule_expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alerts.yaml: {rule.get('alert') or rule.get('record')}", rule["expr"]


def as_promql(expr: str) -> str:
    """A Grafana query as Prometheus reads it: its variables replaced by what they stand for."""
    expr = re.sub(r"\$__(rate_)?interval|\$__range", "5m", expr)
    expr = re.sub(r"label_values\(([^,]+),\s*\w+\)", r"\1", expr)  # a variable's values query
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def metric_and_label_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression uses."""
    expr = as_promql(expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings hold no names
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        labels |= {name.strip() for name in grouping.split(",") if name.strip()}
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    metrics = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", bare):
        calls_a_function = bare[match.end() :].lstrip().startswith("(")
        if not calls_a_function and match.group().lower() not in PROMQL_WORDS:
            metrics.add(match.group())
    return metrics, labels


# --- tests -------------------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    assert "SUCCESS" in run_promtool("check", "rules", ALERTS.name)
    assert "SUCCESS" in run_promtool("test", "rules", "alerts.test.yaml")


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tested = yaml.safe_load((OBSERVABILITY / "alerts.test.yaml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tested
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {name.split(": ", 1)[1] for name, _ in rule_expressions()}
    assert alerts <= fired, f"alerts no test shows firing: {sorted(alerts - fired)}"


def test_the_issue_asks_for_these_alerts() -> None:
    # lag growing, outbox stuck, DLQ non-empty, needs_attention > 0, a service not ready
    joined = " ".join(expr for _, expr in rule_expressions())
    for metric in (
        "ordermesh_consumer_lag",
        "ordermesh_outbox_oldest_seconds",
        "ordermesh_dlq_depth",
        "ordermesh_orders_needing_attention",
        "up{",
        "ordermesh_consumer_stalled",
        "ordermesh_relay_healthy",
        "ordermesh_background_task_dead",
        'ordermesh_http_requests_total{status_class="5xx"',  # the 5xx rate
    ):
        assert metric in joined, metric


def test_prometheus_configuration_for_compose_is_valid() -> None:
    assert "SUCCESS" in run_promtool("check", "config", "prometheus.yml")


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    targets = list(dashboard_targets())
    assert targets, "no dashboard queries found"
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": as_promql(expr)}
                    for i, (_, expr) in enumerate(targets)
                ],
            }
        ]
    }
    (tmp_path / "dashboard-queries.yaml").write_text(yaml.safe_dump(rules))
    assert "SUCCESS" in run_promtool("check", "rules", "dashboard-queries.yaml", cwd=tmp_path)


@pytest.mark.parametrize(
    "where, expr", [*dashboard_targets(), *rule_expressions()], ids=lambda v: str(v)[:60]
)
def test_every_expression_names_metrics_and_labels_the_services_export(where: str, expr: str) -> None:
    metrics, labels = metric_and_label_names(expr)
    exported = exported_metrics()
    unknown = sorted(metrics - exported.keys() - SYNTHETIC)
    assert not unknown, f"{where}: no service exports {unknown} (query: {expr})"
    known_labels = TARGET_LABELS | {"alertname", "alertstate"}
    for metric in metrics & exported.keys():
        known_labels |= exported[metric]
    assert labels <= known_labels, (
        f"{where}: labels {sorted(labels - known_labels)} on none of {sorted(metrics)}"
    )


def test_the_name_check_catches_a_metric_nobody_exports() -> None:
    metrics, labels = metric_and_label_names(
        "histogram_quantile(0.99, sum by (le, step) "
        '(rate(ordermesh_saga_step_seconds_bucket{job=~"$job"}[5m])))'
    )
    assert metrics == {"ordermesh_saga_step_seconds_bucket"}
    assert labels == {"le", "step", "job"}
    assert "ordermesh_saga_step_seconds_bucket" not in exported_metrics()


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    joined = " ".join(expr for _, expr in dashboard_targets())
    for metric in (
        "sum by (channel) (rate(ordermesh_orders_placed_total",  # orders per second
        "ordermesh_saga_outcomes_total",
        "sum by (le, stage) (rate(ordermesh_saga_stage_seconds_bucket",  # saga p50 / p99 by stage
        "ordermesh_saga_seconds_bucket",
        "ordermesh_consumer_lag",  # lag per consumer group
        "ordermesh_outbox_backlog",
        "ordermesh_orders_needing_attention",
        "ordermesh_orders_stuck",  # stuck orders by stage
        "ordermesh_dlq_depth",
        'ordermesh_http_requests_total{status_class="5xx"',  # error rate
        'ordermesh_http_requests_total{status_class="4xx"',
        "ordermesh_handler_errors_total",
    ):
        assert metric in joined, metric


def test_the_kubernetes_prometheus_rule_carries_exactly_the_alert_rules() -> None:
    (rule,) = [doc for doc in yaml.safe_load_all(PROMETHEUS_RULE.read_text()) if doc]
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"], (
        "deploy/k8s/monitoring/prometheus-rule.yaml is stale: run `make observability`"
    )


def test_compose_mounts_the_same_rules_the_rule_file_names() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in spec["prometheus"]["volumes"] if m.startswith("./")}
    assert mounts["./deploy/observability/alerts.yaml"] == "/etc/prometheus/alerts.yaml"
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    rule_file = (
        Path(mounts["./deploy/observability/prometheus.yml"]).parent / config["rule_files"][0].split()[0]
    )
    assert str(rule_file) == "/etc/prometheus/alerts.yaml"
