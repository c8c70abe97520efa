"""Where to connect and which credential source to use, password kept opaque.

Priority (docs/dump.md): the first non-empty of SESSION_DATABASE_URL,
BACKUP_DATABASE_URL, DATABASE_URL wins; each may come from `<NAME>_FILE` (a
missing file counts as unset) and a plain `<NAME>` beats its own `_FILE`.
Without a URL the libpq variables and PGPASSFILE are used.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote_to_bytes

from .errors import ConfigError
from .masking import register_secret

URL_SOURCES = ("SESSION_DATABASE_URL", "BACKUP_DATABASE_URL", "DATABASE_URL")
MAX_URL_FILE_BYTES = 64 << 10
_ASCII_SPACE = " \t\r\n"
_UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 3986 userinfo (unreserved, sub-delims, ':', percent-encoding) plus raw non-ASCII text,
# which libpq takes as it is; anything else would be cut or read differently.
_USERINFO = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:%\u0080-\U0010ffff]*")
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
# Every variable resolve_target reads (PGPASSWORD only to refuse it), for the declaration.
VARIABLES = (
    *(name for name in _LIBPQ_VARS if name != "PGCONNECT_TIMEOUT"),
    "PGPASSFILE",
    "PGPASSWORD",
    *(f"{name}{tail}" for name in URL_SOURCES for tail in ("", "_FILE")),
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
    if value := env.get(name, "").strip(_ASCII_SPACE):
        return _text(value, name), name
    path = env.get(f"{name}_FILE", "").strip()
    if path:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_URL_FILE_BYTES + 1)
        except FileNotFoundError:
            return "", ""
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read the file ({exc.strerror})") from None
        if len(data) > MAX_URL_FILE_BYTES:
            raise ConfigError(f"{name}_FILE: the file is larger than {MAX_URL_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8").strip(_ASCII_SPACE)
        except UnicodeDecodeError:
            raise ConfigError(f"{name}_FILE: the file is not UTF-8 text") from None
        if "\n" in text:
            raise ConfigError(f"{name}_FILE: the file holds more than one line")
        return text, f"{name}_FILE"
    return "", ""


def _text(value: str, name: str) -> str:
    """An environment value that really is UTF-8 (Python keeps undecodable bytes as
    surrogates, which would otherwise surface later as a traceback)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    return value


def _decode(text: str, source: str, what: str) -> str:
    """libpq's percent-decoding: %XX only (a '+' stays a '+'), UTF-8, no NUL."""
    if _BAD_PERCENT.search(text):
        raise ConfigError(
            f"{source}: the {what} has a '%' that is not percent-encoding; write it as %25"
        )
    try:
        value = unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: the {what} is not UTF-8 once percent-decoded") from None
    if "\0" in value:
        raise ConfigError(f"{source}: the {what} contains %00")
    return value


def _hosts(hostspec: str, source: str) -> tuple[str, str]:
    """`h1:5432,[::1]:5433,h3` as libpq's PGHOST and PGPORT lists."""
    hosts, ports = [], []
    for item in hostspec.split(","):
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ConfigError(f"{source}: an IPv6 host in the URL is not [address]:port")
            port = rest[1:]
        else:
            host, _, port = item.partition(":")
        if port and not (port.isascii() and port.isdigit()):
            raise ConfigError(
                f"{source}: a port in the URL is not a number (a raw '/', '?' or '#' in the "
                "password cuts the URL early: percent-encode them)"
            )
        hosts.append(_decode(host, source, "host"))
        ports.append(port)
    pghost = ",".join(hosts) if any(hosts) else ""
    pgport = ",".join(ports) if any(ports) else ""
    return pghost, pgport


def _from_url(url: str, base: dict[str, str], source: str) -> Target:
    """Parse like libpq does, and refuse what libpq and we could read differently.

    Error messages never quote any part of the URL: the password may be anywhere in it."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in {"postgres", "postgresql"}:
        raise ConfigError(f"{source}: must be a postgresql:// URL")
    if any(c.isspace() or unicodedata.category(c) in _UNSAFE for c in url):
        raise ConfigError(
            f"{source}: the URL contains whitespace or control characters; percent-encode them"
        )
    if "#" in rest:
        raise ConfigError(f"{source}: the URL contains a raw '#'; percent-encode it as %23")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in tail:
        raise ConfigError(
            f"{source}: the URL has an '@' after a '/' or '?': a raw '/' or '?' in the "
            "password cuts the URL there; percent-encode them (%2F, %3F), and '@' as %40"
        )
    userinfo, at, hostspec = authority.rpartition("@")
    params = dict(base)
    password: str | None = None
    if at:
        if "@" in userinfo:
            raise ConfigError(f"{source}: a raw '@' in the user or password; write it as %40")
        if not _USERINFO.fullmatch(userinfo):
            raise ConfigError(
                f"{source}: the user or password contains a character that must be percent-encoded"
            )
        user_raw, colon, password_raw = userinfo.partition(":")
        if user := _decode(user_raw, source, "user"):
            params["PGUSER"] = user
        if colon:
            password = _decode(password_raw, source, "password")
    pghost, pgport = _hosts(hostspec, source) if hostspec else ("", "")
    if pghost:
        params["PGHOST"] = pghost
    if pgport:
        params["PGPORT"] = pgport
    path, _, query = tail.partition("?")
    if dbname := _decode(path.removeprefix("/"), source, "database name"):
        params["PGDATABASE"] = dbname
    for item in filter(None, query.split("&")):
        key_raw, eq, value_raw = item.partition("=")
        key = _decode(key_raw, source, "parameter name")
        value = _decode(value_raw, source, "parameter value")
        if key == "password":
            password = value
        elif key in _QUERY_TO_ENV and eq:
            params[_QUERY_TO_ENV[key]] = value
        else:
            shown = repr(key) if re.fullmatch(r"[a-z_]{1,40}", key) else "(a name)"
            raise ConfigError(f"{source}: unsupported URL parameter {shown}")
    return Target(
        params=tuple(sorted(params.items())),
        password=Password(password) if password else None,
        source=source,
    )
