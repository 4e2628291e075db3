"""Writes the JSON schemas tests/ops/test_k8s_schemas.py validates deploy/k8s against, from
sources fetched by package name (deploy/README.md, "Offline validation", says which and how):

    python deploy/k8s/schemas/vendor.py kubernetes <kubernetes-validate's v1.37.0-local-strict>
    python deploy/k8s/schemas/vendor.py crds <directories of CustomResourceDefinition YAML>...

Kubernetes: one self-contained file per kind the manifests use (the kind's schema with only
the definitions it reaches). CRDs: one file per kind and version deploy/k8s uses, the CRD's
openAPIV3Schema made strict the way kubeconform's -strict does (an object that lists its
properties accepts no others, unless it preserves unknown fields), so a misspelt field fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
# The built-in kinds deploy/k8s uses, as kubernetes-validate names their files.
KUBERNETES_KINDS = (
    "configmap-v1",
    "secret-v1",
    "service-v1",
    "namespace-v1",
    "deployment-apps-v1",
    "job-batch-v1",
    "poddisruptionbudget-policy-v1",
    "networkpolicy-networking-v1",
)
# The custom resources deploy/k8s uses: (group, kind).
CUSTOM_KINDS = {
    ("kafka.strimzi.io", "Kafka"),
    ("kafka.strimzi.io", "KafkaNodePool"),
    ("kafka.strimzi.io", "KafkaTopic"),
    ("kafka.strimzi.io", "KafkaUser"),
    ("postgresql.cnpg.io", "Cluster"),
    ("postgresql.cnpg.io", "ScheduledBackup"),
    ("keda.sh", "ScaledObject"),
    ("keda.sh", "TriggerAuthentication"),
    ("monitoring.coreos.com", "PodMonitor"),
    ("monitoring.coreos.com", "ServiceMonitor"),
    ("monitoring.coreos.com", "PrometheusRule"),
    ("external-secrets.io", "ExternalSecret"),
}
DEFINITIONS_PREFIX = "/api/_definitions.json#/$defs/"


def vendor_kubernetes(source: Path) -> None:
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    out = HERE / "kubernetes"
    out.mkdir(exist_ok=True)
    for name in KUBERNETES_KINDS:
        schema = json.loads((source / f"{name}.json").read_text())
        needed: dict[str, Any] = {}
        pending = [schema]
        while pending:
            for ref in _refs(pending.pop()):
                key = ref.removeprefix(DEFINITIONS_PREFIX).removeprefix("#/$defs/")
                if key not in needed:
                    needed[key] = definitions[key]
                    pending.append(definitions[key])
        schema = _rewrite_refs(schema)
        schema["$defs"] = {key: _rewrite_refs(value) for key, value in sorted(needed.items())}
        schema.pop("$id", None)
        (out / f"{name}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (value.replace(DEFINITIONS_PREFIX, "#/$defs/") if key == "$ref" else _rewrite_refs(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(value) for value in node]
    return node


def vendor_crds(sources: list[Path]) -> None:
    out = HERE / "crds"
    out.mkdir(exist_ok=True)
    used = api_versions_used()
    written = set()
    for source in sources:
        for path in sorted([*source.glob("*.yaml"), *source.glob("*.yml")]):
            for crd in yaml.load_all(path.read_text(), Loader=_CrdLoader):  # noqa: S506
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                if (group, kind) not in CUSTOM_KINDS:
                    continue
                for version in crd["spec"]["versions"]:
                    if f"{group}/{version['name']}" not in used.get(kind, set()):
                        continue
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
                    name = f"{group}_{kind.lower()}_{version['name']}.json"
                    (out / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                    written.add((group, kind))
    missing = CUSTOM_KINDS - written
    if missing:
        print(f"no CRD found for {sorted(missing)}", file=sys.stderr)


class _CrdLoader(yaml.SafeLoader):
    """YAML 1.1 reads a bare `=` as the "value" tag, which some CRDs' enums contain."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def api_versions_used() -> dict[str, set[str]]:
    """kind -> the apiVersions deploy/k8s writes it with (only those are vendored)."""
    used: dict[str, set[str]] = {}
    for path in HERE.parent.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc:
                used.setdefault(doc["kind"], set()).add(doc["apiVersion"])
    return used


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items()}
        if "(?i)" in str(node.get("pattern", "")):
            # Go's inline case-insensitivity flag is no ECMA-262 regex (JSON Schema's dialect).
            del node["pattern"]
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(value) for value in node]
    return node


if __name__ == "__main__":
    what, *paths = sys.argv[1:]
    if what == "kubernetes":
        vendor_kubernetes(Path(paths[0]))
    else:
        vendor_crds([Path(p) for p in paths])
