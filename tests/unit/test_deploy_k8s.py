"""deploy/k8s: every manifest validates against the Kubernetes schemas, and they fit together.

Kustomize is rendered here without the kubectl binary: the kustomization's resources are read,
its configMapGenerator is expanded (files and literals, without the name's hash suffix) and its
image override applied. Where kubectl is installed, its own rendering is compared with this one.
Every object, the example Secrets included, is validated with the ``kubernetes-validate``
package (strict: unknown fields fail) against the oldest and newest Kubernetes it bundles.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from daemon.settings import Settings
from daemon.vault.keys import VaultError, parse_keys
from tests.unit.settings_catalogue import all_env_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CONFIG = ROOT / "config"
#: Seconds syncd needs after the grace period: release leases, stop HTTP, close the pools.
SHUTDOWN_MARGIN = 15
#: The kustomization fields the expansion below understands; any other fails the test.
UNDERSTOOD = {"apiVersion", "kind", "resources", "images", "configMapGenerator"}
VERSIONS = sorted({kubernetes_validate.utils.all_versions()[0],
                   kubernetes_validate.latest_version()})

Obj = dict[str, Any]


def load_documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> Obj:
    data: Obj = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    unknown = set(data) - UNDERSTOOD
    assert not unknown, f"kustomization fields this test cannot expand: {unknown}"
    return data


def generated_config_maps(kust: Obj) -> list[Obj]:
    out: list[Obj] = []
    for gen in kust.get("configMapGenerator", []):
        assert set(gen) <= {"name", "files", "literals", "options"}, gen
        assert set(gen.get("options", {})) <= {"disableNameSuffixHash"}, gen
        data: dict[str, str] = {}
        for entry in gen.get("files", []):
            key, _, path = entry.rpartition("=") if "=" in entry else ("", "", entry)
            source = (K8S / path).resolve()
            data[key or source.name] = source.read_text()
        for literal in gen.get("literals", []):
            key, sep, value = literal.partition("=")
            assert sep, literal
            data[key] = value
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": gen["name"]}, "data": data})
    return out


def apply_images(objects: list[Obj], kust: Obj) -> None:
    for image in kust.get("images", []):
        new = image.get("newName", image["name"]) + (
            f":{image['newTag']}" if "newTag" in image else "")
        for obj in objects:
            for container in pod_containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = new


def pod_containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


@cache
def rendered() -> tuple[Obj, ...]:
    kust = kustomization()
    objects = [doc for name in kust["resources"] for doc in load_documents(K8S / name)]
    objects += generated_config_maps(kust)
    apply_images(objects, kust)
    return tuple(objects)


@cache
def example_secrets() -> tuple[Obj, ...]:
    docs = load_documents(K8S / "secret.example.yaml")
    assert docs
    assert all(d["kind"] == "Secret" for d in docs)
    return tuple(docs)


def find(kind: str, name: str | None = None) -> Obj:
    matches = [o for o in (*rendered(), *example_secrets())
               if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def deployment() -> Obj:
    return find("Deployment")


def pod_spec() -> Obj:
    spec: Obj = deployment()["spec"]["template"]["spec"]
    return spec


def main_container() -> Obj:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    container: Obj = containers[0]
    return container


def settings_map() -> dict[str, str]:
    data: dict[str, str] = find("ConfigMap", "syncd-settings")["data"]
    return data


def secret_data(name: str) -> dict[str, str]:
    data: dict[str, str] = find("Secret", name)["stringData"]
    return data


# --- schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(version: str) -> None:
    objects = [*rendered(), *example_secrets()]
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "PodDisruptionBudget",
                                            "ConfigMap", "Secret"}
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_refuses_an_unknown_field() -> None:
    broken = {**find("Service"), "spec": {**find("Service")["spec"], "selektor": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_the_same_objects() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(K8S)],
        capture_output=True, text=True, timeout=120, check=True)
    theirs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def key(obj: Obj) -> tuple[str, str]:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap":
            name = re.sub(r"-[a-z0-9]{10}$", "", name)  # kustomize's content hash
        return obj["kind"], name

    assert sorted(map(key, theirs)) == sorted(map(key, rendered()))
    ours = {key(o): o for o in rendered()}
    for obj in theirs:
        if obj["kind"] == "ConfigMap":
            assert obj["data"] == ours[key(obj)]["data"]
        kubernetes_validate.validate(obj, VERSIONS[-1], strict=True)


# --- how the objects fit together ---------------------------------------------------------


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_selectors_match_the_pod_labels() -> None:
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert labels_match(deployment()["spec"]["selector"]["matchLabels"], labels)
    assert labels_match(find("Service")["spec"]["selector"], labels)
    assert labels_match(find("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)


def test_three_replicas_and_a_budget_that_keeps_two() -> None:
    replicas = deployment()["spec"]["replicas"]
    assert replicas == 3
    pdb = find("PodDisruptionBudget")["spec"]
    kept = pdb["minAvailable"] if "minAvailable" in pdb else replicas - pdb["maxUnavailable"]
    assert 1 <= kept < replicas


def test_ports_named_by_probes_and_the_service_exist() -> None:
    container = main_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    names = set(ports) | set(ports.values())
    probes = {kind: container[kind]["httpGet"]
              for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["port"] in names
    for port in find("Service")["spec"]["ports"]:
        assert port["targetPort"] in names
    assert int(settings_map()["SYNCD_HTTP_PORT"]) == ports["http"]
    assert settings_map()["SYNCD_HTTP_HOST"] == "0.0.0.0"  # noqa: S104 (pods listen on all)


def test_grace_period_matches_the_settings_default() -> None:
    default = Settings(_env_file=None).worker_grace_seconds
    grace = float(settings_map().get("SYNCD_WORKER_GRACE_SECONDS", default))
    assert grace == default
    command = main_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pod_spec()["terminationGracePeriodSeconds"] == pre_stop + grace + SHUTDOWN_MARGIN


def test_runs_syncd_run_non_root_on_a_read_only_root() -> None:
    assert main_container()["command"] == ["syncd", "run"]
    # The Service is named syncd: its links would put SYNCD_SERVICE_HOST, SYNCD_PORT, ...
    # into the environment syncd reads its settings from.
    assert pod_spec()["enableServiceLinks"] is False
    assert pod_spec()["securityContext"]["runAsNonRoot"] is True
    uid = pod_spec()["securityContext"]["runAsUser"]
    assert uid != 0
    user = re.search(r"^USER (\d+)", (ROOT / "Containerfile").read_text(), re.M)
    assert user
    assert int(user[1]) == uid
    for container in pod_containers(deployment()):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["image"] == "registry.example.com/syncd:0.1.0"
        resources = container["resources"]
        assert _mebibytes(resources["limits"]["memory"]) >= _mebibytes(
            resources["requests"]["memory"])


def _mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def test_every_reference_names_an_existing_object_key_or_volume() -> None:
    config_maps = {o["metadata"]["name"] for o in rendered() if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"] for o in example_secrets()}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    for volume in volumes.values():
        if "configMap" in volume:
            assert volume["configMap"]["name"] in config_maps
        if "secret" in volume:
            assert volume["secret"]["secretName"] in secrets
    for container in pod_containers(deployment()):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes


def _mount_of(volume_kind: str, name: str) -> PurePosixPath:
    volumes = [v["name"] for v in pod_spec()["volumes"]
               if v.get(volume_kind, {}).get("name" if volume_kind == "configMap"
                                              else "secretName") == name]
    assert len(volumes) == 1, name
    mounts = [m["mountPath"] for m in main_container()["volumeMounts"]
              if m["name"] == volumes[0]]
    assert len(mounts) == 1, name
    return PurePosixPath(mounts[0])


def test_settings_point_at_the_mounted_config_keys_and_secrets() -> None:
    settings = settings_map()
    config_dir = PurePosixPath(settings["SYNCD_CONFIG_DIR"])
    assert _mount_of("configMap", "syncd-venues") == config_dir / "venues"
    assert _mount_of("configMap", "syncd-templates") == config_dir / "templates"
    key_file = PurePosixPath(settings["SYNCD_ENCRYPTION_KEY_FILES"])
    assert key_file.parent == _mount_of("secret", "syncd-keys")
    assert key_file.name in secret_data("syncd-keys")
    secrets_dir = PurePosixPath(settings["SYNCD_SECRETS_DIR"])
    assert _mount_of("secret", "syncd-venue-files") == secrets_dir
    # The vault keys stay outside the directory venue files may name as credentials.
    assert secrets_dir not in key_file.parents


def test_every_environment_name_is_a_setting_or_a_venue_credential() -> None:
    known = set(all_env_names())
    names = set(settings_map()) | set(secret_data("syncd"))
    unknown = sorted(n for n in names if n not in known and not n.startswith("VENUE_"))
    assert not unknown, f"not syncd settings (a typo?): {unknown}"


def test_config_changes_reach_running_pods_and_setting_changes_roll_out() -> None:
    options = {g["name"]: g.get("options", {}).get("disableNameSuffixHash", False)
               for g in kustomization()["configMapGenerator"]}
    # The reconciler watches the mounted files; a mount with subPath would never update.
    assert options == {"syncd-venues": True, "syncd-templates": True, "syncd-settings": False}
    assert not [m for m in main_container()["volumeMounts"] if "subPath" in m]


def test_the_config_map_generator_lists_every_config_file() -> None:
    venues = find("ConfigMap", "syncd-venues")["data"]
    templates = find("ConfigMap", "syncd-templates")["data"]
    assert set(venues) == {p.name for p in (CONFIG / "venues").glob("*.y*ml")}
    assert set(templates) == {p.name for p in (CONFIG / "templates").glob("*.y*ml")}


def test_the_example_secrets_answer_every_credential_reference_with_placeholders() -> None:
    text = "\n".join(p.read_text() for p in sorted(CONFIG.rglob("*.yaml")))
    env_refs = set(re.findall(r"\benv:([A-Za-z_][A-Za-z0-9_]*)", text))
    file_refs = {PurePosixPath(p) for p in re.findall(r"\bfile:(\S+)", text)}
    assert env_refs
    assert file_refs
    assert env_refs <= set(secret_data("syncd"))
    secrets_dir = PurePosixPath(settings_map()["SYNCD_SECRETS_DIR"])
    files = secret_data("syncd-venue-files")
    for ref in file_refs:
        assert ref.parent == secrets_dir, ref
        assert ref.name in files, ref
    for secret in example_secrets():
        for name, value in secret["stringData"].items():
            assert "CHANGE-ME" in value, f"{secret['metadata']['name']}.{name} is not a placeholder"
    with pytest.raises(VaultError):
        parse_keys(secret_data("syncd-keys")["encryption-keys"], source="example")
