"""Can the operator start its work? The CRD, its RBAC and the Lease namespace, said plainly.

Without these checks a missing CRD or a missing permission shows up as kopf's and the client's
raw HTTP dumps, repeated on every retry. Instead: one readable log line per distinct problem,
a failing readiness probe (/readyz) while any problem lasts, and a quiet retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from learnops_operator.rest import path, request
from learnops_operator.settings import Settings
from learnops_operator.spec import API_VERSION, GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
REVIEWS = path("apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews")


@dataclass(frozen=True)
class Need:
    """One permission the operator cannot work without."""

    verb: str
    group: str
    resource: str
    lease: bool = False
    """Checked in the Lease namespace instead of the watched scope."""


# The verbs the handlers and the sweep use (manifests/operator/rbac*.yaml grant exactly these
# and a few more for kopf); the lease rules only matter with leader election.
NEEDS: tuple[Need, ...] = (
    Need("list", GROUP, PLURAL),
    Need("watch", GROUP, PLURAL),
    Need("patch", GROUP, PLURAL),
    Need("update", GROUP, f"{PLURAL}/status"),
    Need("watch", "batch", "cronjobs"),
    Need("create", "batch", "cronjobs"),
    Need("patch", "batch", "cronjobs"),
    Need("watch", "batch", "jobs"),
    Need("create", "batch", "jobs"),
    Need("list", "", "pods"),
    Need("get", "", "persistentvolumeclaims"),
    Need("create", "", "events"),
    Need("list", "", "events"),
    Need("watch", "apps", "deployments"),
    Need("watch", "autoscaling", "horizontalpodautoscalers"),
    Need("create", "coordination.k8s.io", "leases", lease=True),
)


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)[:200]
    except ValueError:
        return str(exc.reason)[:200]


def crd_problem(api: client.ApiClient) -> str | None:
    """The CRD is served (discovery is open to every authenticated user)."""
    try:
        resources = request(api, "GET", path("apis", GROUP, VERSION))
    except ApiException as exc:
        if exc.status == 404:
            resources = {}
        else:
            return f"cannot discover {API_VERSION}: HTTP {exc.status} {_reason(exc)}"
    names = {r.get("name") for r in resources.get("resources") or ()}
    if PLURAL not in names:
        return (
            f"the DatabaseBackup CRD ({PLURAL}.{GROUP}) is not installed: "
            "kubectl apply -f manifests/crds/ (or helm install with crds.install=true)"
        )
    return None


def rbac_problem(api: client.ApiClient, settings: Settings) -> str | None:
    """Every permission in NEEDS, asked of the API server itself (SelfSubjectAccessReview)."""
    missing: list[str] = []
    for need in NEEDS:
        if need.lease and not settings.leader_election:
            continue
        namespace = settings.lease_namespace if need.lease else (settings.namespace or "")
        attributes = {
            "verb": need.verb,
            "group": need.group,
            "resource": need.resource.split("/")[0],
            "subresource": need.resource.partition("/")[2],
            "namespace": namespace,
        }
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {k: v for k, v in attributes.items() if v}},
        }
        try:
            result = request(api, "POST", REVIEWS, body=review)
        except ApiException as exc:
            return f"cannot check RBAC: HTTP {exc.status} {_reason(exc)}"
        if not (result.get("status") or {}).get("allowed"):
            scope = f"namespace {namespace}" if namespace else "all namespaces"
            missing.append(f"{need.verb} {need.resource} ({scope})")
    if not missing:
        return None
    return (
        "RBAC: the operator's ServiceAccount may not "
        + ", ".join(missing)
        + "; apply manifests/operator/ (or the chart) for this watch scope"
    )


def problems(api: client.ApiClient, settings: Settings) -> list[str]:
    """Everything that keeps the operator from starting, each as one readable sentence."""
    found: list[str] = []
    checks: tuple[Callable[[], str | None], ...] = (
        lambda: crd_problem(api),
        lambda: rbac_problem(api, settings),
    )
    for check in checks:
        try:
            problem = check()
        except (OSError, ApiException) as exc:
            problem = f"the API server cannot be reached: {type(exc).__name__}"
        if problem is not None:
            found.append(problem)
    return found


class Readiness:
    """/readyz: 200 while the operator can work (leading or standing by), else 503 + why."""

    def __init__(self) -> None:
        self.problems: tuple[str, ...] = ("starting",)
        self._logged: tuple[str, ...] = ()
        self._runner: web.AppRunner | None = None

    def report(self, problems: Sequence[str], logged_elsewhere: bool = False) -> None:
        """Set the current problems; each distinct set is logged once, not per retry."""
        self.problems = tuple(problems)
        if self.problems == self._logged:
            return
        self._logged = self.problems
        if self.problems and not logged_elsewhere:
            for problem in self.problems:
                log.error(problem, extra={"event": "operator.blocked", "problem": problem})
        else:
            log.info("ready", extra={"event": "operator.ready"})

    @property
    def ready(self) -> bool:
        return not self.problems

    async def serve(self, port: int) -> None:
        if not port:
            return

        async def readyz(_: web.Request) -> web.Response:
            body = {"ready": self.ready, "problems": list(self.problems)}
            return web.json_response(body, status=200 if self.ready else 503)

        app = web.Application()
        app.router.add_get("/readyz", readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", port).start()  # noqa: S104 (kubelet probe)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
