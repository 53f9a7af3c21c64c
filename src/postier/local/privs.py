"""Switch the effective user and group IDs for one delivery, then switch back.

Follows Postfix local(8) "DELIVERY RIGHTS" and the set_eugid() habit of the
Postfix delivery agents: the process keeps its real (root) IDs and only changes
its *effective* IDs, so that it can return to root after the delivery.

Only the effective IDs change, and they are process-wide: use ``as_user`` from a
single thread only (the local agent delivers one recipient at a time). It is a
no-op when the process does not run as root, or when ``uid`` is ``None``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def running_as_root() -> bool:
    """True when the process may change its effective IDs at will."""
    return os.geteuid() == 0 or os.getuid() == 0


def set_eugid(uid: int, gid: int, groups: Sequence[int] | None = None) -> None:
    """Make ``uid``/``gid`` (and ``groups``) the effective identity.

    We first return to root (only root may change the group list), then set the
    groups and the effective gid, and finally the effective uid.
    """
    if os.geteuid() != 0:
        os.seteuid(0)
    os.setgroups(list(groups) if groups is not None else [gid])
    os.setegid(gid)
    if uid != 0:
        os.seteuid(uid)


@contextmanager
def as_user(
    uid: int | None, gid: int | None, groups: Sequence[int] | None = None
) -> Iterator[None]:
    """Run the body with effective IDs ``uid``/``gid`` and supplementary ``groups``.

    ``groups`` defaults to just ``gid`` (Postfix: "secondary groups are not
    enabled"). Afterwards the effective IDs and group list in force before the
    call are restored, even when the body raises. A no-op when not root or when
    ``uid`` is ``None``. Not thread-safe: effective IDs are per process.
    """
    if uid is None or not running_as_root():
        yield
        return
    the_gid = gid if gid is not None else os.getegid()
    saved_uid = os.geteuid()
    saved_gid = os.getegid()
    saved_groups = os.getgroups()
    set_eugid(uid, the_gid, groups)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setgroups(saved_groups)
        os.setegid(saved_gid)
        if saved_uid != 0:
            os.seteuid(saved_uid)
