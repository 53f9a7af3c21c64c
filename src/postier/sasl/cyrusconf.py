"""Cyrus SASL's application configuration for smtpd (``smtpd.conf``): where, and what it says.

Follows Postfix's SASL_README (Cyrus: ``smtpd_sasl_path`` names the application,
``cyrus_sasl_config_path`` the directories searched; Debian's Postfix also looks in
``/etc/postfix/sasl``) and Cyrus SASL's options (``pwcheck_method``, ``mech_list``,
``saslauthd_path``). Pure but for reading the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Searched when cyrus_sasl_config_path is empty (Debian's Postfix first, then Cyrus's).
DEFAULT_DIRECTORIES = ("/etc/postfix/sasl", "/etc/sasl2", "/usr/lib/sasl2")
DEFAULT_SASLAUTHD_PATH = "/var/run/saslauthd/mux"
#: The mechanisms postier verifies through saslauthd.
SUPPORTED = ("PLAIN", "LOGIN")


@dataclass(frozen=True)
class CyrusConf:
    """What smtpd.conf says. ``file``: where it was read (None: no file, defaults)."""

    file: str | None = None
    pwcheck_method: str = "saslauthd"
    mech_list: tuple[str, ...] = ()
    saslauthd_path: str = DEFAULT_SASLAUTHD_PATH
    options: dict[str, str] = field(default_factory=dict)

    def mechanisms(self) -> tuple[str, ...]:
        """The mechanisms offered: ``mech_list`` ∩ PLAIN LOGIN (both without a list)."""
        if not self.mech_list:
            return SUPPORTED
        return tuple(m for m in self.mech_list if m in SUPPORTED)

    def problems(self) -> list[str]:
        """Warnings for what postier does not do (other pwcheck methods, mechanisms)."""
        out = []
        methods = self.pwcheck_method.split()
        if "saslauthd" not in methods:
            out.append(f"{self.file}: pwcheck_method: {self.pwcheck_method}: only saslauthd "
                       "is supported; no SASL mechanism is offered")
        unsupported = [m for m in self.mech_list if m not in SUPPORTED]
        if unsupported:
            out.append(f"{self.file}: mech_list: not supported with saslauthd, not offered: "
                       + " ".join(unsupported))
        return out

    @property
    def usable(self) -> bool:
        return "saslauthd" in self.pwcheck_method.split()


def parse(text: str, file: str | None = None) -> CyrusConf:
    """``name: value`` lines; ``#`` comments and blank lines skipped."""
    options: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, value = line.partition(":")
        if colon:
            options[name.strip().lower()] = value.strip()
    mechs = tuple(w.upper() for w in options.get("mech_list", "").replace(",", " ").split())
    return CyrusConf(
        file=file,
        pwcheck_method=options.get("pwcheck_method", "saslauthd") or "saslauthd",
        mech_list=mechs,
        saslauthd_path=options.get("saslauthd_path", DEFAULT_SASLAUTHD_PATH)
        or DEFAULT_SASLAUTHD_PATH,
        options=options,
    )


def directories(cyrus_sasl_config_path: str) -> Sequence[str]:
    """The directories searched: the parameter (colon-separated), else the defaults."""
    given = [d for d in cyrus_sasl_config_path.split(":") if d.strip()]
    return given or DEFAULT_DIRECTORIES


def load(application: str, cyrus_sasl_config_path: str = "") -> CyrusConf:
    """The first ``APPLICATION.conf`` found (``smtpd_sasl_path``, ``smtpd`` by default);
    defaults when none exists. Raises OSError when a file exists but cannot be read."""
    for directory in directories(cyrus_sasl_config_path):
        path = os.path.join(directory, f"{application}.conf")
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                return parse(f.read(), path)
    return CyrusConf()
