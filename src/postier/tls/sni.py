"""Server certificates chosen by the client's TLS SNI name: tls_server_sni_maps.

Follows postconf(5) ``tls_server_sni_maps``: the lookup key is the SNI name the client
sent (lower case), then each ancestor domain with a leading dot (``.example.com``); the
value lists files holding a private key followed by its certificate chain, as
``smtpd_tls_chain_files`` (a key file and a certificate file may also be listed one
after the other). A name that matches gets a context with those certificates and the
service's other settings (``ssl.SSLContext.sni_callback``); one that does not keeps the
default chain, and smtpd logs ``TLS SNI NAME from CLIENT not matched, using default
chain``. The files of tables that can be listed (texthash, inline) are read when the
service starts, as root (Postfix reads them when it opens such a table); other tables'
entries are read at their first use.
"""

from __future__ import annotations

import ssl
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from postier.tables.base import TableError
from postier.tables.maps import Maps


@dataclass(frozen=True)
class SniOutcome:
    """What became of the SNI name a client sent: ``matched`` (its certificates were
    used) or not; ``problem``: why an entry that matched could not be used ("" if none)."""

    name: str
    matched: bool
    problem: str = ""


def sni_keys(name: str) -> list[str]:
    """The keys looked up for ``name``: ``a.example.com``, ``.example.com``, ``.com``."""
    folded = name.strip().rstrip(".").lower()
    if not folded:
        return []
    labels = folded.split(".")
    return [folded] + ["." + ".".join(labels[i:]) for i in range(1, len(labels))]


def chain_files(value: str) -> tuple[str, ...]:
    """The file names of a table value (commas or white space between them)."""
    return tuple(value.replace(",", " ").split())


#: Builds the context of one entry from its files; raises on unusable files.
ContextFactory = Callable[[tuple[str, ...]], ssl.SSLContext]


class SniChains:
    """The contexts of tls_server_sni_maps, built once per distinct value.

    ``callback`` is installed as the default context's ``sni_callback``; ``outcome(obj)``
    tells, after the handshake of ``obj`` (an ``ssl.SSLObject``), what was done with the
    name its client sent (None when it sent none).
    """

    def __init__(self, maps: Maps, factory: ContextFactory) -> None:
        self.maps = maps
        self.factory = factory
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._outcomes: weakref.WeakKeyDictionary[object, SniOutcome] = (
            weakref.WeakKeyDictionary())

    def preload(self, values: list[str]) -> None:
        """Build the contexts of ``values`` now (before the privilege drop); raises
        whatever ``factory`` raises for the first that cannot be used."""
        for value in values:
            self.context_for(value)

    def context_for(self, value: str) -> ssl.SSLContext:
        """The context of one table value (built on first use)."""
        files = chain_files(value)
        with self._lock:
            found = self._contexts.get(files)
        if found is None:
            found = self.factory(files)
            with self._lock:
                self._contexts[files] = found
        return found

    def lookup(self, name: str) -> tuple[ssl.SSLContext | None, str]:
        """(the context for SNI ``name`` or None, a problem text or "")."""
        try:
            for key in sni_keys(name):
                value = self.maps.lookup(key)
                if value is not None:
                    return self.context_for(value), ""
        except TableError as exc:
            return None, f"table lookup error: {exc}"
        except (OSError, ssl.SSLError, ValueError) as exc:
            return None, str(exc)
        return None, ""

    def callback(self, obj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                 default: ssl.SSLContext) -> None:
        """``sni_callback``: switch ``obj`` to the context of ``server_name``."""
        if not server_name:
            return
        context, problem = self.lookup(server_name)
        if context is not None:
            obj.context = context
        self._outcomes[obj] = SniOutcome(server_name, context is not None, problem)

    def outcome(self, obj: object) -> SniOutcome | None:
        """What ``callback`` did for ``obj``'s handshake (None: no SNI name sent)."""
        return self._outcomes.pop(obj, None)
