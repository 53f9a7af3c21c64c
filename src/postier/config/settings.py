"""The effective configuration: main.cf settings over the registry defaults, plus master.cf ``-o``.

Follows postconf(5) (value types, ``$name`` expansion, build- and host-dependent
defaults of ``myhostname`` and ``mydomain``) and postconf(1) (the "unused parameter"
warning for parameters that nothing knows or refers to). Values are expanded lazily,
on first ``get``, and cached. ``Config.from_dir`` is the only function here that reads
files; everything else works on the parsed data.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from postier.config import expand as expand_mod
from postier.config import maincf
from postier.config.braces import split_list
from postier.config.errors import ConfigError, ConfigWarning
from postier.config.maincf import MainCf
from postier.config.params import (
    CONFIG_DIRECTORY,
    MYDOMAIN,
    MYHOSTNAME,
    PARAMS,
    BadValue,
    Param,
    parse_bool,
    parse_int,
    parse_size,
    parse_time,
)

__all__ = ["Config", "host_fqdn", "split_list"]

T = TypeVar("T")
_EMPTY: Mapping[str, str] = {}


@functools.lru_cache(maxsize=1)
def host_fqdn() -> str:
    """This host's name as Postfix finds it: gethostname(), or its FQDN if that has no dot."""
    name = socket.gethostname()
    if "." in name:
        return name
    try:
        fqdn = socket.getfqdn(name)
    except OSError:
        fqdn = name
    return fqdn if "." in fqdn else name


def _domain_of(hostname: str) -> str:
    return hostname.split(".", 1)[1] if "." in hostname.strip(".") else "localdomain"


class Config:
    """main.cf settings, ``-o`` overrides and defaults, read through typed getters.

    Precedence: ``overrides`` (master.cf ``-o``), then the configuration directory in
    use (``config_directory``), then main.cf, then the default (computed for
    ``myhostname``/``mydomain``, else the registry's main.cf text).
    """

    def __init__(
        self,
        main: MainCf,
        overrides: Mapping[str, str] = _EMPTY,
        *,
        defaults: Mapping[str, Param[Any]] = PARAMS,
        source: str = "master.cf",
        hostname: str | None = None,
        config_directory: str | None = None,
        extra_references: frozenset[str] = frozenset(),
        override_sources: Mapping[str, str] = _EMPTY,
    ) -> None:
        self.main = main
        self.overrides: dict[str, str] = dict(overrides)
        self.defaults = defaults
        self.override_sources: dict[str, str] = {
            name: override_sources.get(name, source) for name in self.overrides
        }
        self._hostname = hostname
        self.config_directory = config_directory
        self.extra_references = extra_references
        self._cache: dict[str, str] = {}
        self._deriving: set[str] = set()

    # --- construction ------------------------------------------------------------
    @classmethod
    def from_dir(cls, config_dir: str) -> Config:
        """Load ``config_dir``/main.cf; ``config_directory`` is set to ``config_dir``.

        Names referred to from master.cf (``-o name=$foo``) count as used, as in Postfix.
        """
        main = maincf.load(os.path.join(config_dir, "main.cf"))
        refs: set[str] = set()
        master_cf = os.path.join(config_dir, "master.cf")
        if os.path.exists(master_cf):
            from postier.config import mastercf

            try:
                for svc in mastercf.load(master_cf):
                    for value in (*svc.overrides.values(), *svc.args):
                        refs |= expand_mod.references(value)
            except ConfigError:
                pass  # reported when master.cf itself is loaded
        return cls(main, config_directory=config_dir, extra_references=frozenset(refs))

    def with_overrides(self, mapping: Mapping[str, str], source: str = "master.cf") -> Config:
        """This configuration with master.cf ``-o`` settings on top; ``source`` names them."""
        merged = {**self.overrides, **mapping}
        sources = {**self.override_sources, **{name: source for name in mapping}}
        return Config(
            self.main, merged, defaults=self.defaults, source=source, hostname=self._hostname,
            config_directory=self.config_directory, extra_references=self.extra_references,
            override_sources=sources,
        )

    # --- raw values --------------------------------------------------------------
    def hostname(self) -> str:
        """The host's own name (the computed default of ``myhostname``)."""
        return self._hostname if self._hostname is not None else host_fqdn()

    def default(self, name: str) -> str | None:
        """The default main.cf text of ``name`` (computed for myhostname/mydomain), or None."""
        if name == MYHOSTNAME.name:
            return self.hostname() if "." in self.hostname() else f"{self.hostname()}.localdomain"
        if name == MYDOMAIN.name:
            return _domain_of(self.default(MYHOSTNAME.name) or "")
        if name == CONFIG_DIRECTORY.name and self.config_directory is not None:
            return self.config_directory
        param = self.defaults.get(name)
        return None if param is None else param.default

    def is_set(self, name: str) -> bool:
        return name in self.overrides or name in self.main.values

    def get_raw(self, name: str) -> str:
        """The unexpanded value of ``name`` (``$name`` references left as written)."""
        raw = self._raw(name)
        if raw is None:
            raise ConfigError("unknown parameter", param=name)
        return raw

    def _raw(self, name: str) -> str | None:
        if name in self.overrides:
            return self.overrides[name]
        if name == CONFIG_DIRECTORY.name and self.config_directory is not None:
            return self.config_directory
        if name in self.main.values:
            return self.main.values[name].value
        if name in (MYDOMAIN.name, MYHOSTNAME.name):
            return self._derived(name)
        return self.default(name)

    def _derived(self, name: str) -> str | None:
        """mydomain from a configured myhostname, myhostname from the host (and mydomain).

        A derivation that comes back to itself (``myhostname = mail.$mydomain``) falls
        back to the host's own name instead of looping.
        """
        if name in self._deriving:
            return self.default(name)
        self._deriving.add(name)
        try:
            if name == MYDOMAIN.name:
                if self._usable(MYHOSTNAME, MYDOMAIN):
                    return _domain_of(self[MYHOSTNAME])
                return self.default(MYDOMAIN.name)
            host = self.hostname()
            if "." in host:
                return host
            if self._usable(MYDOMAIN, MYHOSTNAME):
                return f"{host}.{self[MYDOMAIN]}"
            return f"{host}.localdomain"
        finally:
            self._deriving.discard(name)

    def _usable(self, source: Param[str], target: Param[str]) -> bool:
        """Whether configured ``source`` can give ``target`` its default (no direct loop)."""
        return self.is_set(source.name) and target.name not in expand_mod.references(
            self.get_raw(source.name))

    def known(self, name: str) -> bool:
        return name in self.defaults or self.is_set(name)

    def names(self) -> list[str]:
        """Every parameter with a value here: the registry's and those set in main.cf/-o."""
        return sorted(set(self.defaults) | set(self.main.values) | set(self.overrides))

    def non_default(self) -> dict[str, str]:
        """The unexpanded values set in main.cf and by ``-o`` overrides (postconf -n)."""
        values = {name: s.value for name, s in self.main.values.items()}
        values.update(self.overrides)
        return values

    def location(self, name: str) -> tuple[str | None, int | None]:
        """Where the value of ``name`` comes from: (file, line), or (None, None) for a default."""
        if name in self.overrides:
            return self.override_sources.get(name, "master.cf"), None
        setting = self.main.values.get(name)
        if setting is not None:
            return setting.file, setting.line
        return None, None

    # --- expanded values ---------------------------------------------------------
    def get(self, name: str) -> str:
        """The value of ``name`` with every ``$name`` reference expanded.

        Parameters that Postfix expands at delivery time (``mailbox_command`` …) come
        back unexpanded. Unknown names raise ConfigError.
        """
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        raw = self.get_raw(name)
        param = self.defaults.get(name)
        if param is not None and not param.expand:
            value = raw
        else:
            try:
                value = expand_mod.expand(raw, self._lookup_for(name))
            except ConfigError as exc:
                file, line = self.location(name)
                raise ConfigError(exc.message, file=file, line=line, param=name) from None
        if not self._deriving:  # values seen mid-derivation may be provisional
            self._cache[name] = value
        return value

    def _lookup_for(self, outer: str) -> expand_mod.Lookup:
        def lookup(ref: str) -> str | None:
            if ref == outer:
                raise ConfigError("recursive expansion")
            return self._raw(ref)

        return lookup

    def expand(self, text: str) -> str:
        """Expand ``$name`` references in any text against this configuration."""
        return expand_mod.expand(text, self._raw)

    def __getitem__(self, param: Param[T]) -> T:
        """The value of ``param`` as its declared type (``cfg[SMTPD_TIMEOUT]`` -> 300.0).

        Expanded as ``get`` does; a value that does not parse as the type raises
        ConfigError naming file, line and parameter.
        """
        return self._typed(param.name, param.convert)

    def _typed(self, name: str, convert: Callable[[str], T]) -> T:
        text = self.get(name)
        try:
            return convert(text)
        except BadValue as exc:
            file, line = self.location(name)
            raise ConfigError(str(exc), file=file, line=line, param=name) from None

    # The string getters below predate typed access (``cfg[PARAM]``); they stay until
    # every caller reads through the declarations.
    def get_bool(self, name: str) -> bool:
        """A yes/no value (case-insensitive)."""
        return self._typed(name, parse_bool)

    def get_int(self, name: str) -> int:
        return self._typed(name, parse_int)

    def get_size(self, name: str) -> int:
        """A size in bytes (a non-negative integer)."""
        return self._typed(name, parse_size)

    def get_time(self, name: str) -> float:
        """A time in seconds; the value may end in s, m, h, d or w (else the parameter's unit)."""
        param = self.defaults.get(name)
        unit = param.time_unit if param is not None else "s"
        return self._typed(name, functools.partial(parse_time, unit=unit))

    def get_list(self, name: str) -> list[str]:
        """The value split on commas and whitespace; ``{ ... }`` groups are single elements."""
        return split_list(self.get(name))

    # --- checking ----------------------------------------------------------------
    def check_value(self, name: str) -> None:
        """Raise ConfigError when the value of known parameter ``name`` has a bad type."""
        param = self.defaults.get(name)
        if param is None:
            self.get(name)
        else:
            self._typed(name, param.convert)

    def validate(self, *, raise_errors: bool = True) -> list[ConfigWarning]:
        """Check every setting; return warnings (unused parameters, undefined references).

        A bad value of a known parameter raises ConfigError naming file, line and
        parameter (with ``raise_errors=False`` it becomes one more warning).
        """
        warnings: list[ConfigWarning] = []
        settings = self.non_default()
        used: set[str] = set(self.extra_references)
        for value in settings.values():
            used |= expand_mod.references(value)
        for name in sorted(settings, key=self._order):
            where = self._where(name)
            if name not in self.defaults:
                if name not in used:
                    warnings.append(f"{where}unused parameter: {name}={settings[name]}")
                continue
            try:
                self.check_value(name)
            except ConfigError as exc:
                if raise_errors:
                    raise
                warnings.append(str(exc))
                continue
            if self.defaults[name].expand:
                undefined: list[str] = []
                try:
                    expand_mod.expand(settings[name], self._raw, on_undefined=undefined.append)
                except ConfigError:
                    continue
                for ref in sorted(set(undefined)):
                    warnings.append(
                        f"{where}parameter {name}: reference to undefined parameter: ${ref}"
                    )
        return warnings

    def _order(self, name: str) -> tuple[int, str, int, str]:
        file, line = self.location(name)
        return (1 if name in self.overrides else 0, file or "", line or 0, name)

    def _where(self, name: str) -> str:
        file, line = self.location(name)
        if file is None:
            return ""
        return f"{file}: " if line is None else f"{file}, line {line}: "
