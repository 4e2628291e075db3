"""The deployment files agree with the code: docker-compose.yml, the Dockerfile and the
Kubernetes manifests in deploy/k8s name only services, settings, topics and consumer groups
that exist, and every service gets probes, limits and (when it consumes Kafka) lag scaling.

Offline: parses the YAML and imports the settings classes and service wiring; no cluster,
no Docker, no broker, no database.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from libs.events.base import Message
from libs.events.topics import ALL_TOPICS, dead_letter_topic
from libs.runtime.consumer import EventConsumer
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.security.settings import AuthSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICES = sorted(
    path.name for path in (ROOT / "services").iterdir() if path.is_dir() and (path / "__init__.py").exists()
)

# An OM_* name as written in a file; "OM_<SERVICE>_..." and "OM_*" in comments do not match.
OM_NAME = re.compile(r"(?<![A-Za-z0-9_])OM_[A-Z0-9_]*[A-Z0-9]")


# --- loading ---------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(
        path for pattern in ("*.yaml", "*.yml") for path in K8S.rglob(pattern) if path != KUSTOMIZATION
    )


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@cache
def documents(path: Path) -> tuple[Any, ...]:
    with path.open() as handle:
        return tuple(doc for doc in yaml.safe_load_all(handle) if doc is not None)


def k8s_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in documents(path):
            yield path, doc


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_objects() if doc.get("kind") == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r} in deploy/k8s, got {len(matches)}"
    return matches[0]


@cache
def compose() -> dict[str, Any]:
    (doc,) = documents(COMPOSE)
    assert isinstance(doc, dict)
    return doc


def config_map_data() -> dict[str, str]:
    """The variables of the ConfigMaps the services read whole (envFrom); other ConfigMaps
    (the roles Job's scripts) hold files."""
    read_whole = {
        source["configMapRef"]["name"]
        for deployment in of_kind("Deployment")
        for source in container(deployment).get("envFrom") or []
        if "configMapRef" in source
    }
    data: dict[str, str] = {}
    for config_map in of_kind("ConfigMap"):
        if config_map["metadata"]["name"] in read_whole:
            data.update(config_map.get("data") or {})
    return data


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: expected one container"
    return dict(containers[0])


def env_values(c: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in c.get("env") or []}


# --- what the code defines ---------------------------------------------------------------------


def service_settings_class(service: str) -> type[BaseSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"services/{service}/settings.py: expected one settings class"
    return classes[0]


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names = set()
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{field_name}".upper())
    return names


@cache
def known_settings() -> frozenset[str]:
    names = env_names(RuntimeSettings) | env_names(AuthSettings)
    for service in SERVICES:
        names |= env_names(service_settings_class(service))
    return frozenset(names)


@cache
def work_consumers(service: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(consumer group, topics) of each consumer the service's bootstrap wires up for its own
    work (the ones that scale with load), unnamespaced."""
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    built = bootstrap.build_runtime(RuntimeSettings(topic_namespace=""))
    runtimes = [built] if isinstance(built, ServiceRuntime) else list(built)
    (runtime,) = [item for item in runtimes if isinstance(item, ServiceRuntime)]
    return tuple((consumer.name, tuple(consumer.topics)) for consumer in runtime.consumers)


@cache
def running_consumers(service: str) -> tuple[EventConsumer, ...]:
    """Every consumer the service's process runs: its own, plus those the HTTP app factory
    adds to every service (the access context's)."""
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    app = bootstrap.build_app(RuntimeSettings(topic_namespace=""))
    return tuple(app.state.runtime.consumers)


def consumers(service: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((consumer.name, tuple(consumer.topics)) for consumer in running_consumers(service))


def all_topics_in_code() -> set[str]:
    topics = set(ALL_TOPICS)
    for service in SERVICES:
        for group, consumed in consumers(service):
            topics.update(consumed)
            topics.add(dead_letter_topic(group))
    return topics


def default_port(service: str) -> int:
    return int(service_settings_class(service).model_fields["http_port"].default)


# --- every file parses, kustomization is complete ----------------------------------------------


@pytest.mark.parametrize("path", [*manifest_files(), KUSTOMIZATION, COMPOSE], ids=rel)
def test_every_yaml_document_parses(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{rel(path)} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{rel(path)}: a document is not a mapping"
        if path.is_relative_to(K8S) and path != KUSTOMIZATION:
            assert doc.get("apiVersion") and doc.get("kind"), f"{rel(path)}: apiVersion/kind"
            assert doc.get("metadata", {}).get("name"), f"{rel(path)}: {doc['kind']} has no name"


def test_kustomization_lists_every_manifest_file() -> None:
    (kustomization,) = documents(KUSTOMIZATION)
    listed = list(kustomization["resources"])
    assert len(listed) == len(set(listed)), "kustomization.yaml lists a file twice"
    missing_files = [item for item in listed if not (K8S / item).is_file()]
    assert not missing_files, f"kustomization.yaml lists files that do not exist: {missing_files}"
    on_disk = {path.relative_to(K8S).as_posix() for path in manifest_files()}
    unlisted = sorted(on_disk - set(listed))
    assert not unlisted, f"manifests missing from deploy/k8s/kustomization.yaml: {unlisted}"


def test_every_object_lands_in_the_ordermesh_namespace() -> None:
    # What `kubectl kustomize` would do (kubectl is not available offline): the kustomization
    # sets the namespace, and no manifest pins another one.
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization.get("namespace") == "ordermesh"
    for path, doc in k8s_objects():
        declared = doc.get("metadata", {}).get("namespace", "ordermesh")
        assert declared == "ordermesh", f"{rel(path)}: {doc['kind']} pins namespace {declared}"


def test_kubernetes_object_names_are_unique() -> None:
    seen: dict[tuple[str, str], str] = {}
    for path, doc in k8s_objects():
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"{key} defined in {seen[key]} and {rel(path)}"
        seen[key] = rel(path)


# --- Kafka topics ------------------------------------------------------------------------------


def kafka_topics() -> dict[str, dict[str, Any]]:
    topics: dict[str, dict[str, Any]] = {}
    for resource in of_kind("KafkaTopic"):
        name = resource["spec"].get("topicName") or resource["metadata"]["name"]
        assert name not in topics, f"two KafkaTopic resources for {name}"
        topics[name] = resource
    return topics


def broker_count() -> int:
    return sum(
        int(pool["spec"]["replicas"])
        for pool in of_kind("KafkaNodePool")
        if "broker" in pool["spec"]["roles"]
    )


def test_every_topic_in_the_code_has_a_kafka_topic() -> None:
    declared = kafka_topics()
    missing = sorted(all_topics_in_code() - set(declared))
    assert not missing, f"topics without a KafkaTopic in deploy/k8s/kafka-topics.yaml: {missing}"
    assert set(ALL_TOPICS) <= set(declared)


def test_kafka_topics_fit_the_cluster() -> None:
    (kafka,) = of_kind("Kafka")
    partitions = int(config_map_data()["OM_TOPIC_PARTITIONS"])
    brokers = broker_count()
    for name, resource in kafka_topics().items():
        spec = resource["spec"]
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert spec["partitions"] == partitions, (
            f"{name}: {spec['partitions']} partitions, OM_TOPIC_PARTITIONS is {partitions}"
        )
        assert 3 <= spec["replicas"] <= brokers, f"{name}: {spec['replicas']} replicas"
        min_isr = int((spec.get("config") or {}).get("min.insync.replicas", 1))
        assert min_isr < spec["replicas"], f"{name}: min.insync.replicas leaves no slack"
    for pool in of_kind("KafkaNodePool"):
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert any("controller" in pool["spec"]["roles"] for pool in of_kind("KafkaNodePool")), (
        "no KRaft controller node pool"
    )


# --- services: one Deployment, Service, PDB and compose service each ---------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_kubernetes_objects_and_a_compose_service(service: str) -> None:
    deployment = named("Deployment", service)
    named("Service", service)
    pdb = named("PodDisruptionBudget", service)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert named("Service", service)["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service in compose()["services"], f"docker-compose.yml has no service {service!r}"


def test_no_deployment_or_compose_service_for_a_service_that_does_not_exist() -> None:
    infrastructure = {"kafka", "postgres", "prometheus", "grafana", "otel-collector", "jaeger"}
    assert sorted(set(compose()["services"]) - infrastructure) == SERVICES
    assert sorted(d["metadata"]["name"] for d in of_kind("Deployment")) == SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_has_probes_limits_and_listens_on_all_interfaces(service: str) -> None:
    deployment = named("Deployment", service)
    c = container(deployment)
    prefix = f"OM_{service.upper()}_"
    env = env_values(c)

    assert c["command"] == ["python", "-m", f"services.{service}"]
    assert env.get(f"{prefix}HTTP_HOST") == "0.0.0.0", f"{service}: set {prefix}HTTP_HOST=0.0.0.0"
    port = int(env.get(f"{prefix}HTTP_PORT", default_port(service)))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": port}

    def probe_port(probe: dict[str, Any]) -> int:
        value = probe["httpGet"]["port"]
        return int(ports[value] if isinstance(value, str) else value)

    for kind, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        probe = c.get(kind)
        assert probe, f"{service}: no {kind}"
        assert probe["httpGet"]["path"] == path, f"{service}: {kind} must GET {path}"
        assert probe_port(probe) == port, f"{service}: {kind} on the wrong port"
    if "startupProbe" in c:
        assert probe_port(c["startupProbe"]) == port

    resources = c.get("resources") or {}
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert resource in (resources.get(section) or {}), f"{service}: no {section}.{resource}"

    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/path") == "/metrics"
    assert int(annotations.get("prometheus.io/port", 0)) == port

    service_ports = [p for p in named("Service", service)["spec"]["ports"]]
    assert any(p["targetPort"] in ("http", port) for p in service_ports)

    security = c.get("securityContext") or {}
    assert security.get("allowPrivilegeEscalation") is False
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_references_existing_config_and_secret(service: str) -> None:
    c = container(named("Deployment", service))
    config_maps = {cm["metadata"]["name"] for cm in of_kind("ConfigMap")}
    for source in c.get("envFrom") or []:
        assert source["configMapRef"]["name"] in config_maps
    secrets = secret_keys()
    deployment = named("Deployment", service)
    for item in c.get("env") or []:
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            assert ref["name"] in secrets, f"{service}: no Secret {ref['name']!r} in deploy/k8s"
            assert ref["key"] in secrets[ref["name"]], (
                f"{service}: Secret {ref['name']} has no key {ref['key']}"
            )
    for volume in deployment["spec"]["template"]["spec"].get("volumes") or []:
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            assert name in secrets, f"{service}: volume of a Secret {name!r} nobody creates"
            for item in volume["secret"].get("items") or []:
                assert item["key"] in secrets[name], f"{service}: Secret {name} has no key {item['key']}"


def secret_keys() -> dict[str, set[str]]:
    """Secrets the manifests declare, and those the operators generate from them: Strimzi one
    per KafkaUser (password) and the cluster CA (ca.crt), CloudNativePG the superuser's (with
    enableSuperuserAccess) and its CA."""
    found: dict[str, set[str]] = {}
    for secret in of_kind("Secret"):
        found[secret["metadata"]["name"]] = {*(secret.get("data") or {}), *(secret.get("stringData") or {})}
    for name, values in external_secret_keys().items():
        found[name] = values
    for user in of_kind("KafkaUser"):
        found[user["metadata"]["name"]] = {"password", "sasl.jaas.config"}
    for kafka in of_kind("Kafka"):
        found[f"{kafka['metadata']['name']}-cluster-ca-cert"] = {"ca.crt"}
    for cluster in of_kind("Cluster"):
        name = cluster["metadata"]["name"]
        found[f"{name}-ca"] = {"ca.crt"}
        if cluster["spec"].get("enableSuperuserAccess"):
            found[f"{name}-superuser"] = {"username", "password"}
    return found


def external_secret_keys() -> dict[str, set[str]]:
    """The Secrets External Secrets writes (ExternalSecret): the keys of its template, or
    else of its data."""
    found: dict[str, set[str]] = {}
    for external in of_kind("ExternalSecret"):
        target = external["spec"].get("target") or {}
        template = (target.get("template") or {}).get("data")
        keys = set(template) if template else {item["secretKey"] for item in external["spec"]["data"]}
        found[target.get("name") or external["metadata"]["name"]] = keys
    return found


def literal_secret_values() -> dict[str, dict[str, str]]:
    """What deploy/k8s writes into Secrets itself: a Secret's stringData, an ExternalSecret's
    template values (the secret parts are {{ .references }} to the store)."""
    values = {s["metadata"]["name"]: dict(s.get("stringData") or {}) for s in of_kind("Secret")}
    for external in of_kind("ExternalSecret"):
        target = external["spec"].get("target") or {}
        template = (target.get("template") or {}).get("data") or {}
        values[target.get("name") or external["metadata"]["name"]] = dict(template)
    return values


def test_no_password_is_committed() -> None:
    # Passwords come from the secret store (ExternalSecret) or from the operators that generate
    # them (Strimzi per KafkaUser, CloudNativePG); a committed placeholder gets deployed.
    for name, values in literal_secret_values().items():
        for key, value in values.items():
            if "password" in key.lower() or "secret" in key.lower():
                assert re.fullmatch(r"\{\{\s*\.\w+\s*\}\}", str(value)), (
                    f"Secret {name}: {key} is written in deploy/k8s, not taken from the secret store"
                )
    for path, doc in k8s_objects():
        assert doc["kind"] != "Secret" or not (doc.get("data") or {}).keys() & {"password"}, rel(path)
    assert not re.search(r"CHANGE-?ME", "".join(p.read_text() for p in manifest_files()), re.I)


# --- OM_* variables: only names the settings classes read ---------------------------------------


def test_settings_classes_use_the_documented_prefixes() -> None:
    assert RuntimeSettings.model_config.get("env_prefix") == "OM_"
    for service in SERVICES:
        prefix = service_settings_class(service).model_config.get("env_prefix")
        assert prefix == f"OM_{service.upper()}_", f"services/{service}/settings.py: {prefix}"


@pytest.mark.parametrize("path", [*manifest_files(), COMPOSE, DOCKERFILE], ids=lambda p: rel(p))
def test_every_om_variable_in_the_deployment_files_is_a_setting(path: Path) -> None:
    used = set(OM_NAME.findall(path.read_text()))
    unknown = sorted(used - known_settings())
    assert not unknown, (
        f"{rel(path)} uses OM_* names no settings class reads (typo?): {unknown}; "
        f"known: {sorted(known_settings())}"
    )


def test_every_variable_given_to_the_services_is_a_setting() -> None:
    given: dict[str, set[str]] = {}
    for key in config_map_data():
        given.setdefault(key, set()).add("ConfigMap")
    for deployment in of_kind("Deployment"):
        for name in env_values(container(deployment)):
            given.setdefault(name, set()).add(f"Deployment {deployment['metadata']['name']}")
    for name, spec in compose()["services"].items():
        if name in SERVICES:
            for key in spec.get("environment") or {}:
                given.setdefault(key, set()).add(f"compose {name}")
    # OTEL_*: the OpenTelemetry SDK's own standard variables, read by the SDK, not by our classes.
    unknown = {
        name: sorted(where)
        for name, where in given.items()
        if name not in known_settings() and not name.startswith("OTEL_")
    }
    assert not unknown, f"variables that no settings class reads: {unknown}"


def test_shared_settings_point_at_the_declared_infrastructure() -> None:
    data = config_map_data()
    (kafka,) = of_kind("Kafka")
    host = data["OM_KAFKA_BOOTSTRAP"].split(":")[0]
    assert host.split(".")[0] == f"{kafka['metadata']['name']}-kafka-bootstrap"
    clusters = {c["metadata"]["name"] for c in of_kind("Cluster")}
    if clusters:  # CloudNativePG; with a managed PostgreSQL, OM_PG_HOST is its host name
        pg_host = data["OM_PG_HOST"].split(".")[0]
        assert pg_host.removesuffix("-rw") in clusters, f"OM_PG_HOST {pg_host}: no CNPG -rw service"
    assert data.get("OM_TOPIC_NAMESPACE", "") == "", "KafkaTopics and KEDA assume no namespace"


# --- KEDA: scale on consumer lag, never beyond the partition count ------------------------------


def scaled_objects() -> dict[str, dict[str, Any]]:
    return {so["spec"]["scaleTargetRef"]["name"]: so for so in of_kind("ScaledObject")}


@pytest.mark.parametrize("service", SERVICES)
def test_consumers_scale_on_their_lag_and_other_services_run_fixed_replicas(service: str) -> None:
    # The access consumer every service runs carries a trickle of admin events, not load.
    wired = {(group, topic) for group, topics in work_consumers(service) for topic in topics}
    scaled = scaled_objects().get(service)
    if wired:
        assert scaled is not None, f"{service} consumes Kafka but has no KEDA ScaledObject"
        triggers = {
            (t["metadata"]["consumerGroup"], t["metadata"]["topic"])
            for t in scaled["spec"]["triggers"]
            if t["type"] == "kafka"
        }
        assert triggers == wired, (
            f"{service}: ScaledObject triggers {sorted(triggers)} != consumers {sorted(wired)}"
        )
    else:
        # Lag never rises for a service that consumes nothing: a ScaledObject would pin it at
        # its minimum. It needs a fixed count instead, two so a node drain keeps its API up.
        assert scaled is None, f"{service} consumes no Kafka topic but has a KEDA ScaledObject"
        replicas = named("Deployment", service)["spec"].get("replicas")
        assert replicas is not None and int(replicas) >= 2, (
            f"{service}: not autoscaled, so its Deployment needs replicas >= 2 (has {replicas})"
        )


def test_scaled_objects_respect_partition_counts() -> None:
    topics = kafka_topics()
    bootstrap = config_map_data()["OM_KAFKA_BOOTSTRAP"]
    assert scaled_objects(), "no KEDA ScaledObject in deploy/k8s"
    for target, scaled in scaled_objects().items():
        spec = scaled["spec"]
        deployment = named("Deployment", target)
        assert "replicas" not in deployment["spec"], (
            f"{target}: Deployment.spec.replicas would fight the ScaledObject on every apply"
        )
        minimum, maximum = int(spec["minReplicaCount"]), int(spec["maxReplicaCount"])
        assert 1 <= minimum <= maximum
        kafka_triggers = [t for t in spec["triggers"] if t["type"] == "kafka"]
        assert kafka_triggers, f"{target}: ScaledObject without a kafka trigger"
        for trigger in kafka_triggers:
            meta = trigger["metadata"]
            assert meta["topic"] in topics, f"{target}: trigger topic {meta['topic']} undeclared"
            partitions = int(topics[meta["topic"]]["spec"]["partitions"])
            assert maximum <= partitions, (
                f"{target}: maxReplicaCount {maximum} > {partitions} partitions of {meta['topic']}"
            )
            assert meta["bootstrapServers"] == bootstrap
            assert str(meta.get("allowIdleConsumers", "false")).lower() == "false"


# --- docker compose ----------------------------------------------------------------------------


def test_compose_infrastructure() -> None:
    services = compose()["services"]
    kafka, postgres = services["kafka"], services["postgres"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert postgres["image"] == "postgres:15"
    for name in ("kafka", "postgres"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    init = compose()["configs"]["postgres-init"]["content"]
    assert re.search(r"CREATE ROLE ordermesh\b.*\bCREATEDB\b", init, re.S)


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service(service: str) -> None:
    spec = compose()["services"][service]
    env = spec["environment"]
    prefix = f"OM_{service.upper()}_"
    port = int(env.get(f"{prefix}HTTP_PORT", default_port(service)))

    assert spec["build"]["context"] == "."
    assert spec["command"] == ["python", "-m", f"services.{service}"]
    assert env.get(f"{prefix}HTTP_HOST") == "0.0.0.0"
    assert env["OM_KAFKA_BOOTSTRAP"].split(":")[0] in compose()["services"]
    assert env["OM_PG_HOST"] in compose()["services"]

    check = " ".join(spec["healthcheck"]["test"])
    assert f":{port}/ready" in check, f"{service}: healthcheck must GET /ready on {port}"
    for dependency in ("kafka", "postgres"):
        assert spec["depends_on"][dependency]["condition"] == "service_healthy"

    # A fixed host port breaks `docker compose up --scale <service>=N` from replica 2 on.
    for mapping in spec.get("ports") or []:
        text = str(mapping)
        assert text.endswith(f":{port}"), f"{service}: publishes {text}, not port {port}"
        host_part = text.removesuffix(f":{port}")
        fixed = re.search(r"(^|:)\d+(-\d+)?$", host_part) or re.search(r":-\d", host_part)
        assert not fixed, f"{service}: fixed host port in {text!r} breaks --scale"


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_builds_one_locked_non_root_image() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        for base in re.findall(r"^FROM (\S+)", text, re.M)
    ]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    assert "uv sync --frozen --no-dev" in text
    for source in ("pyproject.toml", "uv.lock", "libs", "services", "tools"):
        assert re.search(rf"^COPY .*\b{re.escape(source)}\b", text, re.M), f"does not copy {source}"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert re.search(r'^CMD \["python", "-m", "services\.\w+"\]', text, re.M)

    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    needed = {"pyproject.toml", "uv.lock", "README.md", "libs", "services", "tools"}
    assert not (ignored & needed), f".dockerignore excludes {ignored & needed}"


# --- Kafka security: TLS + SCRAM, one user per service, ACLs computed from the code ------------

ALLOWED_OPERATIONS = {"Read", "Write", "Describe"}


def acl_rules(user: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(resource type, literal name, operation) of every rule of a KafkaUser."""
    authorization = user["spec"]["authorization"]
    assert authorization["type"] == "simple"
    rules = set()
    for acl in authorization["acls"]:
        resource = acl["resource"]
        assert resource.get("patternType", "literal") == "literal", (
            f"{user['metadata']['name']}: prefix rules grant topics nobody reviewed"
        )
        assert acl.get("type", "allow") == "allow"
        for operation in acl["operations"]:
            rules.add((resource["type"], resource.get("name", ""), operation))
    return rules


def messages_named_in(source: Path) -> tuple[set[type[Message]], set[type[Message]]]:
    """(classes constructed, classes referenced) among the public messages a module of a
    service names through `from libs.events... import ...`."""
    tree = ast.parse(source.read_text())
    imported: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("libs.events"):
            module = importlib.import_module(str(node.module))
            for alias in node.names:
                imported[alias.asname or alias.name] = getattr(module, alias.name, None)

    def resolve(node: ast.expr) -> Any:
        if isinstance(node, ast.Name):
            return imported.get(node.id)
        if isinstance(node, ast.Attribute):
            base = resolve(node.value)
            return getattr(base, node.attr, None) if inspect.ismodule(base) else None
        return None

    def is_message(obj: Any) -> bool:
        return inspect.isclass(obj) and issubclass(obj, Message) and hasattr(obj, "message_type")

    constructed, referenced = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and is_message(target := resolve(node.func)):
            constructed.add(target)
        if isinstance(node, ast.Name | ast.Attribute) and is_message(target := resolve(node)):
            referenced.add(target)
    return constructed, referenced


@cache
def topics_written(service: str) -> frozenset[str]:
    """The topics a service's code publishes to: those of the messages it constructs, and of
    the messages it names without handling them (a command in the saga's table, built later
    from it); plus the dead-letter topic of each of its consumer groups."""
    constructed: set[type[Message]] = set()
    referenced: set[type[Message]] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        if "tests" not in path.relative_to(ROOT).parts:
            made, named = messages_named_in(path)
            constructed |= made
            referenced |= named
    handled = {message for consumer in running_consumers(service) for message in consumer.handlers}
    published = constructed | (referenced - handled)
    return frozenset(
        {message.topic for message in published}
        | {dead_letter_topic(consumer.name) for consumer in running_consumers(service)}
    )


def expected_service_acls(service: str) -> set[tuple[str, str, str]]:
    rules = {("topic", topic, "Write") for topic in topics_written(service)}
    for group, consumed in consumers(service):
        rules.add(("group", group, "Read"))
        rules |= {("topic", topic, "Read") for topic in consumed}
    return rules


def kafka_user_of(service: str) -> dict[str, Any]:
    env = env_values(container(named("Deployment", service)))
    username = env.get("OM_KAFKA_SASL_USERNAME")
    assert isinstance(username, str), f"{service}: OM_KAFKA_SASL_USERNAME is not set to a user name"
    password_ref = (env.get("OM_KAFKA_SASL_PASSWORD") or {}).get("secretKeyRef") or {}
    # Strimzi puts the generated password in a Secret named like the KafkaUser.
    assert password_ref == {"name": username, "key": "password"}, (
        f"{service}: OM_KAFKA_SASL_PASSWORD must come from the Secret {username}, key password"
    )
    return named("KafkaUser", username)


def test_kafka_accepts_only_tls_clients_authenticated_with_scram_and_checks_acls() -> None:
    (kafka,) = of_kind("Kafka")
    listeners = kafka["spec"]["kafka"]["listeners"]
    for listener in listeners:
        assert listener["tls"] is True, f"listener {listener['name']} without TLS"
        assert listener.get("authentication", {}).get("type") == "scram-sha-512", (
            f"listener {listener['name']} accepts unauthenticated clients"
        )
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    data = config_map_data()
    assert data["OM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["OM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    port = int(data["OM_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    assert port in {int(listener["port"]) for listener in listeners}
    for user in of_kind("KafkaUser"):
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert "OM_KAFKA_SASL_PASSWORD" not in data, "a shared Kafka password in the ConfigMap"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_connects_as_its_own_kafka_user_and_trusts_the_cluster_ca(service: str) -> None:
    user = kafka_user_of(service)
    others = {kafka_user_of(other)["metadata"]["name"] for other in SERVICES if other != service}
    assert user["metadata"]["name"] not in others, f"{service} shares its Kafka user"

    deployment = named("Deployment", service)
    (kafka,) = of_kind("Kafka")
    ca_dir = str(Path(config_map_data()["OM_KAFKA_SSL_CAFILE"]).parent)
    mounts = {m["mountPath"]: m["name"] for m in container(deployment).get("volumeMounts") or []}
    assert ca_dir in mounts, f"{service}: nothing mounted at {ca_dir} (OM_KAFKA_SSL_CAFILE)"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    ca_volume = volumes[mounts[ca_dir]]
    assert ca_volume["secret"]["secretName"] == f"{kafka['metadata']['name']}-cluster-ca-cert"
    file_name = Path(config_map_data()["OM_KAFKA_SSL_CAFILE"]).name
    assert {"key": "ca.crt", "path": file_name} in ca_volume["secret"]["items"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_may_write_and_read_exactly_the_topics_its_code_uses(service: str) -> None:
    granted = acl_rules(kafka_user_of(service))
    expected = expected_service_acls(service)
    missing, extra = sorted(expected - granted), sorted(granted - expected)
    assert not missing and not extra, (
        f"KafkaUser of {service} in deploy/k8s/kafka-users.yaml: "
        f"add {missing} (the code uses them), remove {extra} (the code does not)"
    )


def test_no_kafka_user_may_create_delete_or_reconfigure_anything() -> None:
    # Topics are the Topic Operator's (kafka-topics.yaml); a service that could create them
    # could also create topics nobody reviewed.
    for user in of_kind("KafkaUser"):
        operations = {operation for _, _, operation in acl_rules(user)}
        assert operations <= ALLOWED_OPERATIONS, f"{user['metadata']['name']}: {operations}"


def test_keda_may_only_describe_the_topics_and_groups_it_scales_on() -> None:
    triggers = [
        (so, trigger)
        for so in of_kind("ScaledObject")
        for trigger in so["spec"]["triggers"]
        if trigger["type"] == "kafka"
    ]
    authentications = {ta["metadata"]["name"]: ta for ta in of_kind("TriggerAuthentication")}
    secrets = secret_keys()
    users = set()
    for scaled, trigger in triggers:
        name = (trigger.get("authenticationRef") or {}).get("name")
        assert name in authentications, f"{scaled['metadata']['name']}: trigger without authentication"
        refs = {ref["parameter"]: ref for ref in authentications[name]["spec"]["secretTargetRef"]}
        assert set(refs) >= {"sasl", "tls", "username", "password", "ca"}
        for ref in refs.values():
            assert ref["key"] in secrets.get(ref["name"], set()), f"{name}: {ref} resolves to nothing"
        literal = {s["metadata"]["name"]: s.get("stringData") or {} for s in of_kind("Secret")}
        assert literal[refs["sasl"]["name"]][refs["sasl"]["key"]] == "scram_sha512"
        assert literal[refs["tls"]["name"]][refs["tls"]["key"]] == "enable"
        users.add(literal[refs["username"]["name"]][refs["username"]["key"]])
        assert refs["password"]["name"] in users
    (keda_user,) = users
    scaled_on = {("topic", t["metadata"]["topic"]) for _, t in triggers}
    scaled_on |= {("group", t["metadata"]["consumerGroup"]) for _, t in triggers}
    assert acl_rules(named("KafkaUser", keda_user)) == {(kind, name, "Describe") for kind, name in scaled_on}


def test_a_sales_channel_user_may_only_publish_to_the_intake_topic_and_read_its_results() -> None:
    from libs.events.topics import ORDER_INTAKE, ORDER_INTAKE_RESULTS

    service_users = {kafka_user_of(service)["metadata"]["name"] for service in SERVICES}
    keda_users = {
        ref["name"]
        for ta in of_kind("TriggerAuthentication")
        for ref in ta["spec"]["secretTargetRef"]
        if ref["parameter"] == "password"
    }
    for user in of_kind("KafkaUser"):
        if user["metadata"]["name"] not in service_users | keda_users:
            name = user["metadata"]["name"]
            assert acl_rules(user) == {
                ("topic", ORDER_INTAKE, "Write"),
                ("topic", ORDER_INTAKE_RESULTS, "Read"),
                ("group", name, "Read"),
            }, name


# --- PostgreSQL: a role per service, its own database only -------------------------------------


def pg_secret_of(service: str) -> str:
    env = env_values(container(named("Deployment", service)))
    user_ref = (env.get("OM_PG_USER") or {}).get("secretKeyRef") or {}
    password_ref = (env.get("OM_PG_PASSWORD") or {}).get("secretKeyRef") or {}
    assert user_ref.get("name") and user_ref["name"] == password_ref.get("name"), (
        f"{service}: OM_PG_USER and OM_PG_PASSWORD must come from one Secret"
    )
    return str(user_ref["name"])


def test_each_service_has_its_own_postgres_role_which_the_roles_job_creates() -> None:
    secrets = literal_secret_values()
    by_service = {service: pg_secret_of(service) for service in SERVICES}
    assert len(set(by_service.values())) == len(SERVICES), f"services share a role: {by_service}"
    usernames = [secrets[name]["username"] for name in by_service.values()]
    assert len(set(usernames)) == len(usernames), f"two Secrets name one role: {usernames}"

    job = named("Job", "ordermesh-pg-roles")
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    projected = {
        (source["secret"]["name"], item["key"], item["path"])
        for source in volumes["secrets"]["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    # run.sh names each database <OM_DB_PREFIX>_<directory>: the directory is the service.
    for service, secret in by_service.items():
        assert (secret, "username", f"{service}/username") in projected, f"Job misses {service}'s role"
        assert (secret, "password", f"{service}/password") in projected
    assert len(projected) == 2 * len(SERVICES), "the roles Job creates roles of no service"
    job_env = env_values(container(job))
    assert job_env["OM_DB_PREFIX"]["configMapKeyRef"]["key"] == "OM_DB_PREFIX"
    assert job_env["PGSSLMODE"] == "verify-full"


# --- network: the services' port (API and /metrics) only from the ingress and monitoring ------


def test_only_the_ingress_and_monitoring_namespaces_reach_the_services_port() -> None:
    policies = [p for p in of_kind("NetworkPolicy") if "Ingress" in p["spec"]["policyTypes"]]
    for service in SERVICES:
        labels = named("Deployment", service)["spec"]["template"]["metadata"]["labels"]
        selecting = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert selecting, f"{service}: no NetworkPolicy selects its pods, anyone may connect"
        sources = set()
        for policy in selecting:
            for rule in policy["spec"]["ingress"]:
                assert rule.get("from"), f"{policy['metadata']['name']}: a rule open to every source"
                assert [p["port"] for p in rule.get("ports") or []] == ["http"], (
                    f"{policy['metadata']['name']}: reaches more than the HTTP port"
                )
                for peer in rule["from"]:
                    assert set(peer) == {"namespaceSelector"}, f"{service}: unexpected peer {peer}"
                    sources.add(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
        assert sources == {"ingress-nginx", "monitoring"}, f"{service}: reachable from {sources}"


def test_strimzi_runs_the_operators_that_apply_the_topics_and_users() -> None:
    (kafka,) = of_kind("Kafka")
    entity_operator = kafka["spec"].get("entityOperator") or {}
    assert "topicOperator" in entity_operator, "no Topic Operator: KafkaTopic resources do nothing"
    assert "userOperator" in entity_operator, "no User Operator: KafkaUser resources do nothing"


def test_in_kubernetes_the_kafka_topics_are_the_only_source_of_topics() -> None:
    # A service creating a missing topic would race the Topic Operator with one replica;
    # acks=all then fails under min.insync.replicas=2.
    assert config_map_data().get("OM_KAFKA_CREATE_TOPICS") == "false"
    (kafka,) = of_kind("Kafka")
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


def test_compose_creates_topics_with_the_replication_factor_its_broker_can_hold() -> None:
    kafka_env = compose()["services"]["kafka"]["environment"]
    brokers = kafka_env["KAFKA_PROCESS_ROLES"].count("broker")
    for service in SERVICES:
        env = compose()["services"][service]["environment"]
        assert int(env["OM_TOPIC_REPLICATION_FACTOR"]) == brokers


def test_each_service_may_connect_only_to_kafka_postgres_dns_the_collector_and_the_issuer() -> None:
    egress = [p for p in of_kind("NetworkPolicy") if "Egress" in p["spec"]["policyTypes"]]
    (kafka,) = of_kind("Kafka")
    (cluster,) = of_kind("Cluster")
    listener_ports = {int(listener["port"]) for listener in kafka["spec"]["kafka"]["listeners"]}
    for service in SERVICES:
        labels = named("Deployment", service)["spec"]["template"]["metadata"]["labels"]
        selecting = [p for p in egress if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert selecting, f"{service}: no egress NetworkPolicy, it may connect anywhere"
        allowed = set()
        for policy in selecting:
            for rule in policy["spec"]["egress"]:
                assert rule.get("to") and rule.get("ports"), f"{policy['metadata']['name']}: open rule"
                ports = frozenset((p["port"], p.get("protocol", "TCP")) for p in rule["ports"])
                for peer in rule["to"]:
                    allowed.add((yaml.safe_dump(peer, sort_keys=True), ports))
        kafka_peer = {
            "podSelector": {
                "matchLabels": {
                    "strimzi.io/cluster": kafka["metadata"]["name"],
                    "strimzi.io/broker-role": "true",
                }
            }
        }
        pg_peer = {"podSelector": {"matchLabels": {"cnpg.io/cluster": cluster["metadata"]["name"]}}}
        peers = {peer: ports for peer, ports in allowed}
        assert peers[yaml.safe_dump(kafka_peer, sort_keys=True)] == {(p, "TCP") for p in listener_ports}
        assert peers[yaml.safe_dump(pg_peer, sort_keys=True)] == {(5432, "TCP")}
        others = [yaml.safe_load(peer) for peer in peers]
        for peer in others:
            if peer in (kafka_peer, pg_peer):
                continue
            if "ipBlock" in peer:
                assert peers[yaml.safe_dump(peer, sort_keys=True)] == {(443, "TCP")}, "outside: HTTPS only"
                continue
            namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            assert namespace in {"kube-system", "monitoring"}, f"{service} may reach {peer}"
            assert "podSelector" in peer, f"{service} may reach every pod of {namespace}"
