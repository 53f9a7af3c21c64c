"""anvil's counting core: connections and event rates per (service, client), pure.

Follows Postfix's anvil(8): for each ident (``SERVICE:ADDRESS``) it keeps the number of
simultaneous connections and, over a window of ``anvil_rate_time_unit`` that starts at
the first event after the previous window ended, the number of connections, MAIL
(``message``), RCPT (``recipient``), new TLS sessions and AUTH commands. A window is
reset, not slid ("easier than a moving average, and a quicker response to
trespassers"). Each smtpd worker is one *owner* (one stream to anvil): its
connections are remembered so that they are all dropped when it goes away. An ident
with no connection left is forgotten one time unit later (``expire``). Peak values are
kept for the ``statistics: max …`` lines (``statistics``).

Times are seconds since the epoch, given by the caller (this module reads no clock).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field

from postier.anvilclient.protocol import STAT_FAIL, STAT_OK, Answer, Request


@dataclass
class Remote:
    """One (service, client): its connections now, its rates in the current window."""

    ident: str
    count: int = 0
    rate: int = 0
    mail: int = 0
    rcpt: int = 0
    newtls: int = 0
    auth: int = 0
    start: float = 0.0  # the current window's first event; 0: no window
    idle_since: float | None = None  # when count fell to 0

    def reset_rates(self, start: float) -> None:
        self.rate = self.mail = self.rcpt = self.newtls = self.auth = 0
        self.start = start

    def stale(self, now: float, unit: float) -> bool:
        return self.start != 0 and self.start + unit < now


@dataclass
class Peak:
    """The highest value seen since the last report, for whom and when."""

    value: int = 0
    ident: str = ""
    when: float = 0.0

    def update(self, value: int, ident: str, now: float) -> None:
        if value > self.value:
            self.value, self.ident, self.when = value, ident, now


# Rate fields and the names the statistics lines give them, in Postfix's order.
_RATES = (("rate", "connection"), ("mail", "message"), ("rcpt", "recipient"),
          ("newtls", "newtls"), ("auth", "auth"))
_EVENTS = {Request.MESSAGE: "mail", Request.RECIPIENT: "rcpt", Request.NEWTLS: "newtls",
           Request.AUTH: "auth"}


@dataclass
class Anvil:
    """The counts of every (service, client); ``time_unit`` in seconds (> 0)."""

    time_unit: float
    remotes: dict[str, Remote] = field(default_factory=dict)
    owners: dict[Hashable, Counter[str]] = field(default_factory=dict)
    peaks: dict[str, Peak] = field(default_factory=lambda: {
        name: Peak() for name in ("connection count", *(label for _, label in _RATES))})
    max_cache: Peak = field(default_factory=Peak)

    def handle(self, owner: Hashable, request: Request, ident: str, now: float) -> Answer:
        """Carry out one request from ``owner``; the answer to send back."""
        if request is Request.CONNECT:
            count, rate = self.connect(owner, ident, now)
            return Answer(STAT_OK, count=count, rate=rate)
        if request is Request.DISCONNECT:
            self.disconnect(owner, ident, now)
            return Answer(STAT_OK)
        if request is Request.NEWTLS_STATUS:
            return Answer(STAT_OK, rate=self.newtls_status(ident, now))
        if request is Request.LOOKUP:
            remote = self.lookup(ident, now)
            if remote is None:
                return Answer(STAT_OK)
            return Answer(STAT_OK, count=remote.count, rate=remote.rate, mail=remote.mail,
                          rcpt=remote.rcpt, newtls=remote.newtls, auth=remote.auth)
        if request in _EVENTS:
            return Answer(STAT_OK, rate=self.event(owner, request, ident, now))
        return Answer(STAT_FAIL)  # pragma: no cover - every Request is handled above

    def _remote(self, ident: str, now: float) -> Remote:
        remote = self.remotes.get(ident)
        if remote is None:
            remote = self.remotes[ident] = Remote(ident, start=now)
            self.max_cache.update(len(self.remotes), "", now)
        return remote

    def _incr(self, remote: Remote, what: str, now: float) -> int:
        if remote.stale(now, self.time_unit):
            remote.reset_rates(now)
        value: int = getattr(remote, what) + 1
        setattr(remote, what, value)
        return value

    def connect(self, owner: Hashable, ident: str, now: float) -> tuple[int, int]:
        """A new connection: (simultaneous connections, connections in this window),
        both including this one."""
        remote = self._remote(ident, now)
        rate = self._incr(remote, "rate", now)
        remote.count += 1
        remote.idle_since = None
        self.owners.setdefault(owner, Counter())[ident] += 1
        self.peaks["connection"].update(rate, ident, now)
        self.peaks["connection count"].update(remote.count, ident, now)
        return remote.count, rate

    def disconnect(self, owner: Hashable, ident: str, now: float) -> None:
        """A connection of ``owner`` ended; one it never reported (or that was already
        dropped with a previous stream) changes nothing."""
        held = self.owners.get(owner)
        if held is None or held[ident] <= 0:
            return
        held[ident] -= 1
        if held[ident] == 0:
            del held[ident]
        self._drop(ident, now)

    def _drop(self, ident: str, now: float) -> None:
        remote = self.remotes.get(ident)
        if remote is not None and remote.count > 0:
            remote.count -= 1
            if remote.count == 0:
                remote.idle_since = now

    def drop_owner(self, owner: Hashable, now: float) -> None:
        """``owner`` went away (its stream closed): every connection it held ends."""
        for ident, n in self.owners.pop(owner, Counter()).items():
            for _ in range(n):
                self._drop(ident, now)

    def event(self, owner: Hashable, request: Request, ident: str, now: float) -> int:
        """A MAIL, RCPT, new TLS session or AUTH: the count in this window, this one
        included. An ident anvil does not know (its connect came before a restart)
        is entered as a connection of ``owner``, as Postfix does after a reload."""
        remote = self.remotes.get(ident)
        if remote is None:
            self.connect(owner, ident, now)
            remote = self.remotes[ident]
        what = _EVENTS[request]
        value = self._incr(remote, what, now)
        self.peaks[dict(_RATES)[what]].update(value, ident, now)
        return value

    def newtls_status(self, ident: str, now: float) -> int:
        """New TLS sessions in this window, counting nothing."""
        remote = self.lookup(ident, now)
        return 0 if remote is None else remote.newtls

    def lookup(self, ident: str, now: float) -> Remote | None:
        """The counts of ``ident`` (rates of a past window read as 0), or None."""
        remote = self.remotes.get(ident)
        if remote is not None and remote.stale(now, self.time_unit):
            remote.reset_rates(0.0)
        return remote

    def expire(self, now: float) -> int:
        """Forget idents without connections for a time unit; how many went."""
        gone = [ident for ident, r in self.remotes.items()
                if r.count == 0 and r.idle_since is not None
                and r.idle_since + self.time_unit <= now]
        for ident in gone:
            del self.remotes[ident]
        return len(gone)

    def statistics(self) -> list[str]:
        """The ``statistics: max …`` lines (Postfix's anvil_status_dump) for the peaks
        since the last call, which are then cleared."""
        unit = int(self.time_unit)
        lines: list[str] = []

        def report(label: str, text: str) -> None:
            peak = self.peaks[label]
            if peak.value > 0:
                lines.append(text.format(value=peak.value, ident=peak.ident,
                                         when=_ctime(peak.when)))
                self.peaks[label] = Peak()

        report("connection", f"statistics: max connection rate {{value}}/{unit}s for "
                             "({ident}) at {when}")
        report("connection count", "statistics: max connection count {value} for "
                                   "({ident}) at {when}")
        for _, label in _RATES[1:]:
            report(label, f"statistics: max {label} rate {{value}}/{unit}s for "
                          "({ident}) at {when}")
        if self.max_cache.value > 0:
            lines.append(f"statistics: max cache size {self.max_cache.value} at "
                         f"{_ctime(self.max_cache.when)}")
            self.max_cache = Peak()
        return lines


def _ctime(when: float) -> str:
    """``Nov 30 01:57:55``: ctime(3) without the weekday and the year, as Postfix."""
    return time.strftime("%b %e %H:%M:%S", time.localtime(when))
