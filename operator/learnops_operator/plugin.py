"""`kubectl learnops`: backups, on-demand runs, restores and status from the command line.

A kubectl plugin (the console script `kubectl-learnops` on PATH): it speaks to the API server
with the user's kubeconfig and reads only our resources, never a Secret.

Exit codes: 0 done (and succeeded), 1 the run or restore failed, 2 usage error, 3 not found,
4 timed out waiting, 5 the API refused or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from learnops_operator.builders import BACKUP_NOW_ANNOTATION, on_demand_job_name
from learnops_operator.restorespec import POLICIES, RESTORE_KIND, RESTORE_PLURAL
from learnops_operator.spec import API_VERSION, GROUP, PLURAL, VERSION

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_TIMEOUT, EXIT_API = 0, 1, 2, 3, 4, 5
POLL_SECONDS = 1.0
EPILOG = """exit codes:
  0  done (and the run or restore succeeded)
  1  the backup run or the restore failed (its reason is printed)
  2  usage error
  3  the DatabaseBackup or DatabaseRestore does not exist
  4  timed out waiting (the run goes on; check again with `status`)
  5  the API server refused the request or could not be reached
"""


class PluginError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Api:
    custom: client.CustomObjectsApi
    namespace: str


def _connect(args: argparse.Namespace) -> Api:
    try:
        contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        chosen = next((c for c in contexts if c["name"] == args.context), active) or {}
        api_client = config.new_client_from_config(
            config_file=args.kubeconfig, context=args.context
        )
    except (config.ConfigException, OSError, TypeError) as exc:
        raise PluginError(EXIT_API, f"no usable kubeconfig: {exc}") from None
    namespace = args.namespace or (chosen.get("context") or {}).get("namespace") or "default"
    return Api(client.CustomObjectsApi(api_client), namespace)


def _api_error(exc: ApiException, what: str) -> PluginError:
    if exc.status == 404:
        return PluginError(EXIT_NOT_FOUND, f"{what} not found")
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        message = exc.reason
    return PluginError(EXIT_API, f"{what}: the API answered {exc.status}: {message}")


def _call(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except ApiException as exc:
        raise _api_error(exc, what) from None
    except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused, DNS, TLS, retries spent
        raise PluginError(EXIT_API, f"{what}: cannot reach the API server ({exc})") from None


def _get(api: Api, plural: str, name: str) -> dict[str, Any]:
    kind = "DatabaseBackup" if plural == PLURAL else RESTORE_KIND
    what = f"{kind} {api.namespace}/{name}"
    body: dict[str, Any] = _call(
        lambda: api.custom.get_namespaced_custom_object(
            GROUP, VERSION, api.namespace, plural, name
        ),
        what,
    )
    return body


def _wait(deadline: float, probe: Callable[[], Any], what: str) -> Any:
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise PluginError(EXIT_TIMEOUT, f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


def _size(value: Any) -> str:
    if not isinstance(value, int):
        return "-"
    size = float(value)
    for unit in ("B", "Ki", "Mi", "Gi", "Ti"):
        if size < 1024 or unit == "Ti":
            return f"{int(size)}B" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return "-"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _emit(args: argparse.Namespace, data: Any, text: Callable[[TextIO], object]) -> None:
    if args.output == "json":
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        text(sys.stdout)


# -- backups ----------------------------------------------------------------------------------
def cmd_backups(args: argparse.Namespace, api: Api) -> int:
    body = _get(api, PLURAL, args.name)
    artifacts = list((body.get("status") or {}).get("artifacts") or [])

    def text(out: TextIO) -> None:
        if not artifacts:
            out.write(f"no artifacts recorded yet for {api.namespace}/{args.name}\n")
            return
        rows = [["ARTIFACT", "TIME", "SIZE", "SHA256", "VERIFIED RESTORE"]]
        for a in artifacts:
            rows.append(
                [
                    str(a.get("name", "-")),
                    str(a.get("time", "-")),
                    _size(a.get("sizeBytes")),
                    str(a.get("sha256", "-"))[:12],
                    str(a.get("verifiedRestoreTime") or "-"),
                ]
            )
        _table(rows, out)

    _emit(args, {"namespace": api.namespace, "name": args.name, "artifacts": artifacts}, text)
    return EXIT_OK


# -- backup-now -------------------------------------------------------------------------------
def _run_result(status: dict[str, Any], job: str) -> tuple[bool, dict[str, Any]] | None:
    success = status.get("lastSuccessfulBackup") or {}
    if success.get("job") == job:
        return True, success
    failure = status.get("lastFailedBackup") or {}
    if failure.get("job") == job:
        return False, failure
    return None


def cmd_backup_now(args: argparse.Namespace, api: Api) -> int:
    _get(api, PLURAL, args.name)  # a clear "not found" before writing anything
    token = f"kubectl-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    patch = {"metadata": {"annotations": {BACKUP_NOW_ANNOTATION: token}}}
    _call(
        lambda: api.custom.patch_namespaced_custom_object(
            GROUP, VERSION, api.namespace, PLURAL, args.name, patch
        ),
        f"DatabaseBackup {api.namespace}/{args.name}",
    )
    job = on_demand_job_name(args.name, token)
    if not args.wait:
        _emit(args, {"token": token, "job": job}, lambda out: out.write(f"started {job}\n"))
        return EXIT_OK
    sys.stderr.write(f"waiting for {job} (token {token}) ...\n")
    deadline = time.monotonic() + args.timeout
    succeeded, result = _wait(
        deadline,
        lambda: _run_result((_get(api, PLURAL, args.name).get("status") or {}), job),
        f"the result of {job}",
    )

    def text(out: TextIO) -> None:
        if succeeded:
            out.write(
                f"Succeeded: {job} wrote {result.get('artifact', '?')} "
                f"({result.get('size', _size(result.get('sizeBytes')))}, "
                f"sha256 {str(result.get('sha256', '-'))[:12]}, "
                f"{result.get('durationSeconds', '?')} s)\n"
            )
        else:
            out.write(f"Failed: {job} ({result.get('reason')}): {result.get('message', '')}\n")

    data = {"token": token, "job": job, "succeeded": succeeded, "result": result}
    _emit(args, data, text)
    return EXIT_OK if succeeded else EXIT_FAILED


# -- restore ----------------------------------------------------------------------------------
def default_database(backup: str, now: datetime) -> str:
    base = re.sub(r"[^a-z0-9_]", "_", backup.lower())[:30]
    return f"restored_{base}_{now:%Y%m%d%H%M%S}"


def restore_manifest(args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    target: dict[str, Any] = {"dbname": args.database or default_database(args.name, now)}
    target["policy"] = args.policy or ("create" if not args.database else "ifEmpty")
    if target["policy"] == "clean":
        target["allowClean"] = True
    if args.pgpass:
        if not (args.host and args.user):
            raise PluginError(EXIT_USAGE, "--pgpass needs --host and --user")
        target.update({"host": args.host, "user": args.user})
        if args.port:
            target["port"] = args.port
        target["pgpassSecretRef"] = {"name": args.to}
    else:
        if args.host or args.user or args.port:
            raise PluginError(EXIT_USAGE, "--host/--port/--user go with --pgpass")
        target["urlSecretRef"] = {"name": args.to}
    if args.ssl_mode:
        target["sslMode"] = args.ssl_mode
    options: dict[str, Any] = {"jobs": args.jobs}
    if args.schema_only:
        options["schemaOnly"] = True
    if args.no_owner or args.role:
        options["noOwner"] = True
    if args.role:
        options["role"] = args.role
    spec: dict[str, Any] = {
        "source": {"backupRef": {"name": args.name, "artifact": args.artifact}},
        "target": target,
        "options": options,
    }
    if args.allow_source_target:
        spec["allowSourceTarget"] = True
    meta: dict[str, Any] = (
        {"name": args.restore_name}
        if args.restore_name
        else {"generateName": f"{args.name[:30].rstrip('-')}-restore-"}
    )
    return {"apiVersion": API_VERSION, "kind": RESTORE_KIND, "metadata": meta, "spec": spec}


def _restore_done(body: dict[str, Any]) -> dict[str, Any] | None:
    status = body.get("status") or {}
    generation = int(body["metadata"].get("generation") or 0)
    if status.get("phase") in ("Succeeded", "Failed") and status.get("runGeneration") == generation:
        return status
    return None


def _restore_text(name: str, status: dict[str, Any]) -> Callable[[TextIO], None]:
    def text(out: TextIO) -> None:
        phase = status.get("phase", "Pending")
        line = f"{phase}: DatabaseRestore {name}"
        if status.get("artifact"):
            line += f" artifact {status['artifact']}"
        if status.get("durationSeconds") is not None:
            line += f" in {status['durationSeconds']} s"
        counts = status.get("rowCounts") or {}
        if counts.get("tablesChecked"):
            line += (
                f"; {counts['tablesChecked']} tables, {counts.get('rowsChecked', 0)} rows checked"
            )
        if phase in ("Failed", "Pending") and status.get("reason"):
            line += f" ({status['reason']}): {status.get('message', '')}"
        out.write(line + "\n")

    return text


def cmd_restore(args: argparse.Namespace, api: Api) -> int:
    _get(api, PLURAL, args.name)
    manifest = restore_manifest(args, datetime.now(UTC))
    created: dict[str, Any] = _call(
        lambda: api.custom.create_namespaced_custom_object(
            GROUP, VERSION, api.namespace, RESTORE_PLURAL, manifest
        ),
        f"creating a DatabaseRestore in {api.namespace}",
    )
    name = created["metadata"]["name"]
    target = manifest["spec"]["target"]
    if not args.wait:
        data = {"name": name, "namespace": api.namespace, "database": target["dbname"]}
        _emit(
            args,
            data,
            lambda out: out.write(
                f"databaserestore.learnops.io/{name} created (into {target['dbname']}); "
                f"follow it with: kubectl learnops status {name}\n"
            ),
        )
        return EXIT_OK
    sys.stderr.write(f"databaserestore.learnops.io/{name} created; waiting ...\n")
    deadline = time.monotonic() + args.timeout
    status = _wait(
        deadline,
        lambda: _restore_done(_get(api, RESTORE_PLURAL, name)),
        f"DatabaseRestore {name} to finish",
    )
    _emit(
        args,
        {"name": name, "namespace": api.namespace, "status": status},
        _restore_text(name, status),
    )
    return EXIT_OK if status.get("phase") == "Succeeded" else EXIT_FAILED


# -- status -----------------------------------------------------------------------------------
def _condition_rows(status: dict[str, Any]) -> list[list[str]]:
    rows = [["CONDITION", "STATUS", "REASON", "MESSAGE"]]
    for c in status.get("conditions") or []:
        rows.append(
            [
                str(c.get("type")),
                str(c.get("status")),
                str(c.get("reason", "")),
                str(c.get("message", ""))[:80],
            ]
        )
    return rows


def cmd_status(args: argparse.Namespace, api: Api) -> int:
    try:
        body = _get(api, PLURAL, args.name)
        kind = "DatabaseBackup"
    except PluginError as exc:
        if exc.code != EXIT_NOT_FOUND:
            raise
        try:
            body = _get(api, RESTORE_PLURAL, args.name)
        except PluginError as inner:
            if inner.code == EXIT_NOT_FOUND:
                raise PluginError(
                    EXIT_NOT_FOUND,
                    f"no DatabaseBackup or DatabaseRestore {api.namespace}/{args.name}",
                ) from None
            raise
        kind = RESTORE_KIND
    status = dict(body.get("status") or {})
    data = {"kind": kind, "namespace": api.namespace, "name": args.name, "status": status}

    def text(out: TextIO) -> None:
        out.write(f"{kind} {api.namespace}/{args.name}\n")
        if kind == RESTORE_KIND:
            _restore_text(args.name, status)(out)
        else:
            for label, key in (
                ("last success", "lastSuccessfulBackup"),
                ("last failure", "lastFailedBackup"),
                ("verified restore", "lastVerifiedRestore"),
                ("failed drill", "lastFailedDrill"),
            ):
                entry = status.get(key) or {}
                if entry:
                    detail = entry.get("artifact") or entry.get("reason") or ""
                    out.write(f"  {label}: {entry.get('time', '-')} {detail}\n")
            if status.get("nextScheduleTime"):
                out.write(f"  next run: {status['nextScheduleTime']}\n")
        if status.get("conditions"):
            _table(_condition_rows(status), out)

    _emit(args, data, text)
    if kind == RESTORE_KIND:
        return EXIT_FAILED if status.get("phase") == "Failed" else EXIT_OK
    return EXIT_OK


# -- command line -----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"kubectl learnops: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    # Accepted before and after the subcommand; SUPPRESS keeps a subcommand's unset flag from
    # overwriting the value given before it.
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    common.add_argument("--context", help="kubeconfig context to use")
    common.add_argument("--kubeconfig", help="path of the kubeconfig (default: $KUBECONFIG)")
    common.add_argument("-o", "--output", choices=["text", "json"], help="text (default) or json")
    p = _Parser(
        prog="kubectl learnops",
        description="Backups and restores of learnops DatabaseBackups.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    b = sub.add_parser("backups", parents=[common], help="list a DatabaseBackup's artifacts")
    b.add_argument("name", help="DatabaseBackup name")
    now = sub.add_parser(
        "backup-now", parents=[common], help="run a backup now, wait, and print its result"
    )
    now.add_argument("name", help="DatabaseBackup name")
    now.add_argument("--no-wait", dest="wait", action="store_false", help="only start it")
    now.add_argument("--timeout", type=float, default=3600, help="seconds to wait (default 3600)")
    r = sub.add_parser(
        "restore", parents=[common], help="restore an artifact (creates a DatabaseRestore)"
    )
    r.add_argument("name", help="DatabaseBackup to restore from")
    r.add_argument("--to", required=True, metavar="SECRET", help="target's credentials Secret")
    r.add_argument("--artifact", default="latest", help="artifact name or latest (default)")
    r.add_argument("--database", help="target database (default: a new restored_<name>_<time>)")
    r.add_argument(
        "--policy",
        choices=list(POLICIES),
        help="create (default for a new database), ifEmpty (default with --database), clean",
    )
    r.add_argument("--pgpass", action="store_true", help="--to holds a pgpass file, not a URL")
    r.add_argument("--host", help="target host (with --pgpass)")
    r.add_argument("--port", type=int, help="target port (with --pgpass)")
    r.add_argument("--user", help="target role (with --pgpass)")
    r.add_argument("--ssl-mode", help="libpq sslmode of the target")
    r.add_argument("--jobs", type=int, default=1, help="parallel restore jobs")
    r.add_argument("--schema-only", action="store_true")
    r.add_argument("--no-owner", action="store_true")
    r.add_argument("--role", help="restore as this role (implies --no-owner)")
    r.add_argument("--allow-source-target", action="store_true")
    r.add_argument("--restore-name", help="name of the DatabaseRestore (default: generated)")
    r.add_argument("--wait", action="store_true", help="wait for the restore and print its result")
    r.add_argument("--timeout", type=float, default=7200, help="seconds to wait (default 7200)")
    s = sub.add_parser("status", parents=[common], help="status of a DatabaseBackup or restore")
    s.add_argument("name", help="DatabaseBackup or DatabaseRestore name")
    return p


COMMANDS: dict[str, Callable[[argparse.Namespace, Api], int]] = {
    "backups": cmd_backups,
    "backup-now": cmd_backup_now,
    "restore": cmd_restore,
    "status": cmd_status,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    for flag, default in (("namespace", None), ("context", None), ("kubeconfig", None)):
        setattr(args, flag, getattr(args, flag, default))
    args.output = getattr(args, "output", "text")
    if getattr(args, "timeout", 1) <= 0 or getattr(args, "jobs", 1) < 1:
        sys.stderr.write("kubectl learnops: error: --timeout must be > 0 and --jobs >= 1\n")
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args, _connect(args))
    except PluginError as exc:
        sys.stderr.write(f"kubectl learnops: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write("kubectl learnops: interrupted (anything started goes on)\n")
        return 130
