"""Settings declared once: each field names its variable, its default (as the environment
spells it) and its doc. `read` parses what the environment sets, `help_text` is the settings
part of `--help`, and tests hold `.env.example` and the shipped copies to `declared`.

The three deployables carry this same small module (they never import each other);
tests/unit/test_ship_settings.py keeps the copies identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

Parse = Callable[[str, str], Any]
"""(variable name, non-empty text) -> value; raises ConfigError naming the variable."""


@dataclass(frozen=True)
class Declared:
    name: str
    """The field of the settings object."""
    env: str
    """The variable; composite settings name several, '/'-separated, and parse them itself."""
    default: str
    """The default as the environment spells it ('' = unset)."""
    doc: str
    parse: Parse | None
    """None: a composite setting that the package's from_env builds from `env`'s variables."""
    also: tuple[str, ...] = ()
    """Variables read, in order, when `env` is unset."""
    secret: bool = False
    """The value may come from the file named by `<env>_FILE`; it is never shown."""
    flag: str | None = None
    """A command-line flag that gives the same text (operator)."""
    switch: str | None = None
    """The text a flag without a value stands for (e.g. --no-leader-election = 'false')."""

    def names(self) -> tuple[str, ...]:
        extra = (f"{self.env}_FILE",) if self.secret else ()
        return (*self.env.split("/"), *extra, *self.also)


def setting(
    env: str,
    default: str,
    parse: Parse | None,
    doc: str,
    *,
    value: Any = MISSING,
    factory: Callable[[], Any] | None = None,
    also: tuple[str, ...] = (),
    secret: bool = False,
    flag: str | None = None,
    switch: str | None = None,
) -> Any:
    """A dataclass field whose default is `parse(env, default)`, unless `value`/`factory` say
    otherwise (a composite setting, or one computed per process such as a host name)."""
    options = {"also": also, "secret": secret, "flag": flag, "switch": switch}
    metadata = {"declared": (env, default, parse, doc, options)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    if value is MISSING:
        value = parse(env, default) if parse is not None and default else None
    return field(default=value, metadata=metadata)


def declared(cls: type) -> Iterator[Declared]:
    """Every declared setting of a settings dataclass, in field order."""
    for f in fields(cls):
        if "declared" in f.metadata:
            yield _declared(f)


def _declared(f: Field[Any]) -> Declared:
    env, default, parse, doc, options = f.metadata["declared"]
    return Declared(f.name, env, default, doc, parse, **options)


def text(d: Declared, env: Mapping[str, str]) -> str:
    """The non-empty text `env` gives this setting, or ''."""
    for name in (d.env, *d.also):
        if raw := env.get(name, "").strip():
            return raw
    if d.secret and (path := env.get(f"{d.env}_FILE", "").strip()):
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return ""  # a Secret volume without that key: unset, so the default applies
        except OSError as exc:
            raise ConfigError(f"{d.env}_FILE cannot be read: {exc.strerror}") from None
    return ""


def read(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """The parsed value of every simple setting that `env` sets (the defaults stay out)."""
    values: dict[str, Any] = {}
    for d in declared(cls):
        if d.parse is not None and (raw := text(d, env)):
            values[d.name] = d.parse(d.env, raw)
    return values


def value(cls: type, name: str, env: Mapping[str, str]) -> Any:
    """One setting: its default if `env` leaves it unset, None if `env` sets it badly (for a
    report after the whole object failed to parse)."""
    for f in fields(cls):
        if f.name == name:
            d = _declared(f)
            try:
                raw = text(d, env)
                if raw and d.parse is not None:
                    return d.parse(d.env, raw)
            except ConfigError:
                return None
            return f.default if f.default is not MISSING else None
    raise KeyError(name)


def help_text(cls: type) -> str:
    """The settings part of `--help`: every variable with its doc and default."""
    lines = ["settings (environment variables):"]
    for d in declared(cls):
        names = d.env + (f" (or {d.env}_FILE)" if d.secret else "")
        names += "".join(f" (else {other})" for other in d.also)
        names += f"  flag {d.flag}" if d.flag else ""
        shown = "-" if d.secret or not d.default else d.default
        lines += [f"  {names}", f"      {d.doc} [default: {shown}]"]
    return "\n".join(lines)
