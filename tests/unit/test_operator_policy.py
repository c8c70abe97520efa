"""The backup pod is the operator's design: what an author may choose, within which bounds."""

from __future__ import annotations

from typing import Any

import pytest
from learnops_operator import builders, policy
from learnops_operator.spec import Owner, parse

DEFAULT = "registry.example/learnops/dump:1.2.3"
DIGEST = "sha256:" + "a" * 64
POLICY = policy.PodPolicy(
    default_image=DEFAULT,
    allowed_images=("mirror.example/platform/", DIGEST),
    allowed_priority_classes=("backup-low",),
    max_resources={"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"},
)
OWNER = Owner(namespace="team-a", name="nightly", uid="u-1", generation=1)


def _spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedule": "30 2 * * *",
        "database": {"host": "db", "dbname": "app", "user": "b", "pgpassSecretRef": {"name": "p"}},
        "storage": {"persistentVolumeClaim": {"claimName": "backups"}},
    }
    spec.update(extra)
    return spec


def _check(**extra: Any) -> str | policy.Refusal:
    return policy.check(parse(_spec(**extra)), POLICY)


def _refused(result: str | policy.Refusal, reason: str) -> str:
    assert isinstance(result, policy.Refusal), result
    assert result.reason == reason
    return result.message


def test_without_spec_image_the_pod_runs_the_operators_image() -> None:
    assert _check() == DEFAULT
    assert _check(image=DEFAULT) == DEFAULT


@pytest.mark.parametrize(
    "image",
    [
        "mirror.example/platform/dump:9",
        "mirror.example/platform/sub/dump@" + "sha256:" + "b" * 64,
        "anything.example/dump@" + DIGEST,
    ],
)
def test_allow_listed_images_by_prefix_or_digest_are_used(image: str) -> None:
    assert _check(image=image) == image


@pytest.mark.parametrize(
    "image",
    [
        "evil.example/dump:1",
        "mirror.example/platformer/dump:1",  # a prefix ends at a path boundary
        "mirror.example.evil/platform/dump:1",
        "mirror.example/platform/../x/dump:1",
        "Mirror.Example/PLATFORM/Dump:1",
        "mirror.example/platform/dump:1 --privileged",
        "anything.example/dump@sha256:" + "c" * 64,
    ],
)
def test_any_other_image_is_refused_with_a_clear_reason(image: str) -> None:
    message = _refused(_check(image=image), "ImageNotAllowed")
    assert "allow-list" in message or "not a valid image reference" in message


def test_an_empty_allow_list_refuses_every_foreign_image() -> None:
    bare = policy.PodPolicy(default_image=DEFAULT)
    result = policy.check(parse(_spec(image="mirror.example/platform/dump:9")), bare)
    assert "unset spec.image" in _refused(result, "ImageNotAllowed")


def test_a_service_account_choice_is_refused() -> None:
    _refused(_check(serviceAccountName="cluster-admin-sa"), "ServiceAccountNotAllowed")


@pytest.mark.parametrize(
    "toleration",
    [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
        {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule", "operator": "Exists"},
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists"},
        {"operator": "Exists"},  # no key: tolerates every taint
        {
            "key": "dedicated",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 10**6,
        },
    ],
)
def test_control_plane_and_catch_all_tolerations_are_refused(toleration: dict[str, Any]) -> None:
    _refused(_check(tolerations=[toleration]), "SchedulingNotAllowed")


def test_control_plane_node_selectors_are_refused() -> None:
    selector = {"node-role.kubernetes.io/control-plane": ""}
    _refused(_check(nodeSelector=selector), "SchedulingNotAllowed")


@pytest.mark.parametrize(
    "key",
    [
        "container.apparmor.security.beta.kubernetes.io/dump",
        "seccomp.security.alpha.kubernetes.io/pod",
        "kubectl.kubernetes.io/default-container",
        "learnops.io/backup-now",
    ],
)
def test_annotations_that_steer_the_kubelet_or_runtime_are_refused(key: str) -> None:
    _refused(_check(podAnnotations={key: "unconfined"}), "AnnotationsNotAllowed")


def test_priority_classes_outside_the_allow_list_are_refused() -> None:
    _refused(_check(priorityClassName="system-cluster-critical"), "PriorityClassNotAllowed")
    _refused(_check(priorityClassName="high"), "PriorityClassNotAllowed")
    assert _check(priorityClassName="backup-low") == DEFAULT


@pytest.mark.parametrize(
    "resources",
    [
        {"limits": {"memory": "64Gi"}},
        {"requests": {"cpu": "3"}},
        {"limits": {"nvidia.com/gpu": "1"}},
        {"requests": {"hugepages-2Mi": "1Gi"}},
        {"claims": [{"name": "x"}]},
    ],
)
def test_resources_beyond_the_operators_bounds_are_refused(resources: dict[str, Any]) -> None:
    _refused(_check(resources=resources), "ResourcesNotAllowed")


def test_legitimate_scheduling_choices_reach_the_pod() -> None:
    spec = parse(
        _spec(
            nodeSelector={"disk": "ssd", "kubernetes.io/arch": "amd64"},
            tolerations=[{"key": "dedicated", "operator": "Equal", "value": "backup"}],
            affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
            priorityClassName="backup-low",
            resources={"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}},
            podAnnotations={"team.example/cost-center": "42"},
            imagePullPolicy="Always",
            image="mirror.example/platform/dump@" + DIGEST,
        )
    )
    image = policy.check(spec, POLICY)
    assert isinstance(image, str)
    pod = builders.cronjob(OWNER, spec, image)["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd", "kubernetes.io/arch": "amd64"}
    assert pod["spec"]["priorityClassName"] == "backup-low"
    assert pod["metadata"]["annotations"] == {"team.example/cost-center": "42"}
    container = pod["spec"]["containers"][0]
    assert container["image"] == "mirror.example/platform/dump@" + DIGEST
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}}


def test_security_relevant_pod_fields_are_fixed_by_the_operator() -> None:
    spec = parse(_spec())
    pod = builders.cronjob(OWNER, spec, DEFAULT)["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["spec"]["automountServiceAccountToken"] is False
    for key in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
        assert pod["spec"][key] is False
    assert pod["spec"]["containers"][0]["securityContext"]["privileged"] is False
    assert "annotations" not in pod["metadata"]


def test_only_the_url_keys_of_a_url_secret_are_mounted() -> None:
    spec = parse(_spec(database={"urlSecretRef": {"name": "shared"}}))
    pod = builders.cronjob(OWNER, spec, DEFAULT)["spec"]["jobTemplate"]["spec"]["template"]
    (volume,) = [v for v in pod["spec"]["volumes"] if "secret" in v]
    items = volume["secret"]["items"]
    assert [i["key"] for i in items] == [
        "SESSION_DATABASE_URL",
        "BACKUP_DATABASE_URL",
        "DATABASE_URL",
    ]
    one = parse(_spec(database={"urlSecretRef": {"name": "shared", "key": "DATABASE_URL"}}))
    pod = builders.cronjob(OWNER, one, DEFAULT)["spec"]["jobTemplate"]["spec"]["template"]
    (volume,) = [v for v in pod["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["items"] == [{"key": "DATABASE_URL", "path": "DATABASE_URL"}]
    assert "optional" not in volume["secret"]
    env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert "DATABASE_URL_FILE" in env
    assert "SESSION_DATABASE_URL_FILE" not in env
