"""Make the deferred mail for one destination due now: the effect of Postfix's flush(8).

Follows Postfix's flush(8) as ETRN (RFC 1985) and ``postqueue -s SITE`` use it: the
deferred messages with a recipient still to deliver in domain SITE are attempted now.
Postfix keeps a log of queue IDs per site; postier scans ``deferred/`` instead (the
queue file is the one home of its recipients) and sets each chosen file's mtime, its
next attempt time, to now; the caller then asks qmgr to scan ``deferred/``
(``queue.control.Request.SCAN_DEFERRED``). Only the sites of ``fast_flush_domains`` may
be flushed (``flush_configured``; Postfix's flush(8) refuses the others). Blocking file
I/O: an event loop calls it in a thread.
"""

from __future__ import annotations

import os
import time

from postier.config.params import FAST_FLUSH_DOMAINS, PARENT_DOMAIN_MATCHES_SUBDOMAINS, ParamSource
from postier.queue import dirs
from postier.queue.file import CorruptQueueFile, QueueFile
from postier.rewrite.resolve import domain_matches


def recipient_domain(address: str) -> str:
    """The domain of an address, folded: ``User@Example.COM.`` → ``example.com``."""
    return address.rpartition("@")[2].lower().rstrip(".")


def site_domain(site: str) -> str:
    """The domain a site names, folded (``[1.2.3.4]`` → ``1.2.3.4``)."""
    return recipient_domain("@" + site.strip("[]"))


def flush_configured(cfg: ParamSource, site: str) -> bool:
    """Is ``site`` (ETRN's or ``postqueue -s``'s, its ``@``/``#`` prefix dropped) in
    ``fast_flush_domains`` (default ``$relay_domains``; subdomains per
    ``parent_domain_matches_subdomains``)? An address literal matches only as written."""
    return domain_matches(
        site, cfg[FAST_FLUSH_DOMAINS],
        parent_matches=FAST_FLUSH_DOMAINS.name in cfg[PARENT_DOMAIN_MATCHES_SUBDOMAINS])


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
