"""The ``unix:passwd.byname`` table, and the local recipient check wired to the real tables.

Follows postconf(5) ``local_recipient_maps`` (default ``proxy:unix:passwd.byname
$alias_maps``) and local(8): a local recipient is a user of the passwd database or
a name in the aliases. passwd is read at each lookup (as the C library does);
answers are kept a little while, as Postfix's proxymap keeps its table open.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable

from postier.rewrite.resolve import AliasLookup, LocalRecipientCheck, LocalUsers
from postier.tables.base import TableError
from postier.tables.cache import Expiring
from postier.tables.maps import Maps

PASSWD_CACHE_SECONDS = 10.0


def _in_passwd(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PasswdTable:
    """``unix:passwd.byname`` as a ``rewrite.resolve.UserTable``: is ``name`` a user?

    ``exists(name)`` asks the system (``pwd.getpwnam``); answers are kept ``ttl`` seconds.
    """

    def __init__(self, ttl: float = PASSWD_CACHE_SECONDS,
                 exists: Callable[[str], bool] = _in_passwd) -> None:
        self._exists = exists
        self._known: Expiring[bool] = Expiring(ttl)

    def __call__(self, name: str, /) -> bool:
        known = self._known.get(name)
        if known is None:
            known = self._known.put(name, self._exists(name))
        return known


def local_recipient_check(aliases: AliasLookup, recipient_delimiter: str) -> LocalRecipientCheck:
    """The local recipient check of one process: passwd (cached) and ``aliases``.

    Call it with an address (``user@domain`` or ``user``): True, False, or None (a
    table failed); ``.check_localpart(localpart)`` for a bare localpart.
    """
    return LocalRecipientCheck(LocalUsers(PasswdTable(), aliases), recipient_delimiter)


class PasswdByName:
    """``unix:passwd.byname`` as a ``tables.Table``: ``name`` -> its passwd(5) line
    (``name:x:uid:gid:gecos:dir:shell``, as Postfix's dict_unix returns), or None.
    Answers kept ``ttl`` seconds."""

    spec = "unix:passwd.byname"
    pattern = False
    blocking = False

    def __init__(self, ttl: float = PASSWD_CACHE_SECONDS) -> None:
        self._known: Expiring[tuple[str | None]] = Expiring(ttl)

    def lookup(self, key: str) -> str | None:
        known = self._known.get(key)
        if known is None:
            try:
                pw = pwd.getpwnam(key)
                line: str | None = ":".join(str(x) for x in (
                    pw.pw_name, pw.pw_passwd, pw.pw_uid, pw.pw_gid, pw.pw_gecos, pw.pw_dir,
                    pw.pw_shell))
            except KeyError:
                line = None
            known = self._known.put(key, (line,))
        return known[0]


class MapsUsers:
    """``local_recipient_maps`` as a ``rewrite.resolve.UserTable``: is ``name`` (a
    lower-case localpart) in any of the tables? None when a table failed (the
    restriction tempfails, local defers)."""

    def __init__(self, maps: Maps) -> None:
        self.maps = maps

    def __call__(self, name: str, /) -> bool | None:
        try:
            return self.maps.lookup(name) is not None
        except TableError:
            return None


def local_recipients_from(maps: Maps | None, recipient_delimiter: str) -> LocalRecipientCheck:
    """The local recipient check for ``local_recipient_maps`` opened as ``maps``; None
    (the parameter is empty) accepts every local name, as Postfix does."""
    if maps is None:
        return LocalRecipientCheck(lambda name: True, recipient_delimiter)
    return LocalRecipientCheck(MapsUsers(maps), recipient_delimiter)
