"""Writes deploy/k8s/monitoring/prometheus-rule.yaml from deploy/observability/alerts.yaml,
so Kubernetes and docker compose alert on exactly the same rules (one source).

    python deploy/observability/sync_k8s.py          # (make observability) rewrite it
    python deploy/observability/sync_k8s.py --check  # exit 1 if it differs
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "observability" / "alerts.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheus-rule.yaml"

HEADER = """\
# GENERATED from deploy/observability/alerts.yaml by `make observability`
# (deploy/observability/sync_k8s.py): edit that file, not this one. The Prometheus Operator
# loads these rules into every Prometheus whose ruleSelector matches the labels below
# (kube-prometheus-stack: release=<its release name>, or ruleSelectorNilUsesHelmValues=false).
"""


def render() -> str:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "ordermesh",
            "namespace": "ordermesh",
            "labels": {"app.kubernetes.io/part-of": "ordermesh"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not PROMETHEUS_RULE.exists() or PROMETHEUS_RULE.read_text() != text:
            print(f"{PROMETHEUS_RULE.relative_to(ROOT)} is stale: run `make observability`", file=sys.stderr)
            return 1
        return 0
    PROMETHEUS_RULE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
