"""Make the deferred mail for one destination due now: the effect of Postfix's flush(8).

Follows Postfix's flush(8) as ETRN (RFC 1985) and ``postqueue -s SITE`` use it: the
deferred messages with a recipient still to deliver in domain SITE are attempted now.
Postfix keeps a log of queue IDs per site; postier scans ``deferred/`` instead (the
queue file is the one home of its recipients) and sets each chosen file's mtime, its
next attempt time, to now; the caller then asks qmgr to scan ``deferred/``
(``queue.control.Request.SCAN_DEFERRED``). Only the sites of ``fast_flush_domains`` may
be flushed (``flush_configured``; Postfix's flush(8) refuses the others): its domains
and ``type:table`` entries (the site, then its parent domains, looked up), in order.
A table that cannot answer raises ``FlushTableError`` (Postfix 3.7, side by side:
smtpd logs ``warning: fast_flush_domains: TYPE:NAME: table lookup problem`` and answers
``458 Unable to queue messages``). Its tables are opened at start
(``tables.check``): a missing one is a start error. Blocking file I/O: an event loop
calls it in a thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from postier.config.params import FAST_FLUSH_DOMAINS, PARENT_DOMAIN_MATCHES_SUBDOMAINS, ParamSource
from postier.queue import dirs
from postier.queue.file import CorruptQueueFile, QueueFile
from postier.rewrite.resolve import domain_matches, is_table_entry
from postier.tables.base import Table, TableError
from postier.tables.search import domain_keys


class FlushTableError(Exception):
    """A ``fast_flush_domains`` table could not answer; ``spec`` is its ``type:name``;
    ``str()`` is Postfix's ``fast_flush_domains: TYPE:NAME: table lookup problem``."""

    def __init__(self, spec: str) -> None:
        super().__init__(f"{FAST_FLUSH_DOMAINS.name}: {spec}: table lookup problem")
        self.spec = spec


def recipient_domain(address: str) -> str:
    """The domain of an address, folded: ``User@Example.COM.`` → ``example.com``."""
    return address.rpartition("@")[2].lower().rstrip(".")


def site_domain(site: str) -> str:
    """The domain a site names, folded (``[1.2.3.4]`` → ``1.2.3.4``)."""
    return recipient_domain("@" + site.strip("[]"))


def flush_configured(cfg: ParamSource, site: str,
                     open_table: Callable[[str], Table]) -> bool:
    """Is ``site`` (ETRN's or ``postqueue -s``'s, its ``@``/``#`` prefix dropped) in
    ``fast_flush_domains`` (default ``$relay_domains``; subdomains per
    ``parent_domain_matches_subdomains``)? An address literal matches only as written.
    ``open_table``: ``type:name`` -> Table (the process's registry; it raises
    ``TableOpenError`` for a table that cannot be opened). Raises ``FlushTableError``
    when a table cannot answer."""
    parent = FAST_FLUSH_DOMAINS.name in cfg[PARENT_DOMAIN_MATCHES_SUBDOMAINS]
    for raw in cfg[FAST_FLUSH_DOMAINS]:
        entry = raw.strip()
        if not entry:
            continue
        if not is_table_entry(entry) or entry.startswith("/"):
            if domain_matches(site, [entry], parent_matches=parent):
                return True
            continue
        table = open_table(entry)
        try:
            if any(table.lookup(key.text) is not None
                   for key in domain_keys(site_domain(site) if not site.startswith("[")
                                          else site.lower(), parent=parent)
                   if not (key.partial and table.pattern)):
                return True
        except TableError:
            raise FlushTableError(table.spec) from None
    return False


def make_site_due(queue_dir: str, site: str, now: float | None = None) -> int:
    """Set the mtime of every deferred message with a pending recipient in ``site`` to
    ``now`` (default: the time now); returns how many. Files that vanish or cannot be
    read meanwhile are skipped; other ``OSError`` (permission) propagate."""
    want = site_domain(site)
    when = time.time() if now is None else now
    count = 0
    for _queue_id, path in dirs.scan(queue_dir, "deferred"):
        try:
            with QueueFile.open(path, readonly=True) as qf:
                match = any(not r.done and recipient_domain(r.address) == want
                            for r in qf.envelope.recipients)
            if match:
                os.utime(path, (when, when))
                count += 1
        except (FileNotFoundError, CorruptQueueFile):
            continue
    return count
