"""Where to connect and which credential source to use, password kept opaque.

Priority (docs/dump.md): the first non-empty of SESSION_DATABASE_URL,
BACKUP_DATABASE_URL, DATABASE_URL wins; each may come from `<NAME>_FILE` (a
missing file counts as unset) and a plain `<NAME>` beats its own `_FILE`.
Without a URL the libpq variables and PGPASSFILE are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigError
from .masking import register_secret

URL_SOURCES = ("SESSION_DATABASE_URL", "BACKUP_DATABASE_URL", "DATABASE_URL")
# URL query parameters we pass on, as the libpq variable that carries each.
_QUERY_TO_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "options": "PGOPTIONS",
    "host": "PGHOST",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
}
# libpq variables we forward from our own environment when no URL overrides them.
_LIBPQ_VARS = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
    "PGAPPNAME",
    "PGOPTIONS",
    "PGTARGETSESSIONATTRS",
    "PGCONNECT_TIMEOUT",
)


class Password:
    """A password that never prints itself."""

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Password(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Password) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Target:
    """libpq parameters (as PG* variables) plus exactly one credential source."""

    params: tuple[tuple[str, str], ...] = ()
    """Password-free libpq variables, e.g. (("PGHOST", "db"), ("PGUSER", "app"))."""
    passfile: Path | None = None
    """A pgpass file to copy privately (the PGPASSFILE source)."""
    password: Password | None = field(default=None, repr=False)
    """The password from a URL source; it only ever goes into the private pgpass."""
    source: str = "PGPASSFILE"
    """The name (never the value) of the variable the credential came from."""

    def get(self, name: str, default: str = "") -> str:
        return dict(self.params).get(name, default)

    @property
    def host(self) -> str:
        return self.get("PGHOST", "localhost")

    @property
    def port(self) -> str:
        return self.get("PGPORT", "5432")

    @property
    def dbname(self) -> str:
        return self.get("PGDATABASE") or self.user

    @property
    def user(self) -> str:
        return self.get("PGUSER")


def resolve_target(env: Mapping[str, str]) -> tuple[Target, str]:
    """Pick the credential source; returns the target and the source's name."""
    base = {name: env[name] for name in _LIBPQ_VARS if env.get(name)}
    for name in URL_SOURCES:
        url, source = _read_source(env, name)
        if url:
            target = _from_url(url, base, source)
            if target.password is None and env.get("PGPASSFILE"):
                # A URL without a password still authenticates through the pgpass file.
                target = replace(target, passfile=Path(env["PGPASSFILE"]))
            return target, source
    if "PGPASSWORD" in env:
        raise ConfigError("PGPASSWORD is not supported; mount a pgpass file (PGPASSFILE)")
    passfile = env.get("PGPASSFILE", "").strip()
    target = Target(
        params=tuple(sorted(base.items())),
        passfile=Path(passfile) if passfile else None,
        source="PGPASSFILE" if passfile else "none",
    )
    return target, target.source


def _read_source(env: Mapping[str, str], name: str) -> tuple[str, str]:
    if value := env.get(name, "").strip():
        return value, name
    path = env.get(f"{name}_FILE", "").strip()
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip(), f"{name}_FILE"
        except FileNotFoundError:
            return "", ""
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read the file ({exc.strerror})") from None
    return "", ""


def _from_url(url: str, base: dict[str, str], source: str) -> Target:
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(f"{source}: not a valid postgresql:// URL") from None
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ConfigError(f"{source}: must be a postgresql:// URL")
    params = dict(base)
    password = unquote(parts.password) if parts.password else None
    for key, value in (
        ("PGHOST", unquote(hostname or "")),
        ("PGPORT", str(port or "")),
        ("PGUSER", unquote(parts.username or "")),
        ("PGDATABASE", unquote(parts.path.lstrip("/"))),
    ):
        if value:
            params[key] = value
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            password = value
        elif key in _QUERY_TO_ENV:
            params[_QUERY_TO_ENV[key]] = value
        else:
            raise ConfigError(f"{source}: unsupported URL parameter {key!r}")
    return Target(
        params=tuple(sorted(params.items())),
        password=Password(password) if password else None,
        source=source,
    )
