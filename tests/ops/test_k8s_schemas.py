"""deploy/k8s (and the recovery manifests in deploy/recovery) validated offline against the
Kubernetes API's schemas and the CRD schemas of the operators they are written for
(Strimzi, CloudNativePG, KEDA, Prometheus Operator, External Secrets), vendored in
deploy/k8s/schemas (where each came from: deploy/README.md). Strict: a field the schema does
not know fails, as `kubectl apply` with server-side validation would."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "deploy" / "k8s" / "schemas"
MANIFEST_DIRS = (ROOT / "deploy" / "k8s", ROOT / "deploy" / "recovery")


def manifests() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for directory in MANIFEST_DIRS:
        for path in sorted(directory.rglob("*.yaml")):
            if path.name == "kustomization.yaml":
                continue
            for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
                if doc is not None:
                    found.append((path.relative_to(ROOT).as_posix(), index, doc))
    return found


def schema_path(api_version: str, kind: str) -> Path:
    group, _, version = api_version.rpartition("/")
    if not group or group.endswith(".k8s.io") or "." not in group:
        # Built-in: kubernetes-validate names them <kind>[-<first label of the group>]-<version>.
        prefix = f"{kind.lower()}-{group.split('.')[0]}" if group else kind.lower()
        return SCHEMAS / "kubernetes" / f"{prefix}-{version}.json"
    return SCHEMAS / "crds" / f"{group}_{kind.lower()}_{version}.json"


@cache
def validator(path: Path) -> Any:
    return jsonschema_rs.validator_for(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "where, doc", [(f"{path}#{index} {doc.get('kind')}", doc) for path, index, doc in manifests()], ids=str
)
def test_manifest_matches_its_schema(where: str, doc: dict[str, Any]) -> None:
    path = schema_path(doc["apiVersion"], doc["kind"])
    assert path.exists(), (
        f"{where}: no schema for {doc['apiVersion']} {doc['kind']} in deploy/k8s/schemas "
        "(vendor it: deploy/k8s/schemas/vendor.py)"
    )
    errors = [
        f"{'/'.join(map(str, error.instance_path))}: {error.message}"
        for error in validator(path).iter_errors(doc)
    ]
    assert not errors, f"{where}:\n" + "\n".join(errors[:10])


def test_a_misspelt_field_is_refused() -> None:
    # The check has teeth: strict schemas reject what the API server would not know.
    deployment = next(doc for _, _, doc in manifests() if doc["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 10
    assert not validator(schema_path("apps/v1", "Deployment")).is_valid(broken)
    (topic,) = [doc for _, _, doc in manifests() if doc["kind"] == "KafkaTopic"][:1]
    broken = json.loads(json.dumps(topic))
    broken["spec"]["partition"] = broken["spec"].pop("partitions")
    assert not validator(schema_path(topic["apiVersion"], "KafkaTopic")).is_valid(broken)
