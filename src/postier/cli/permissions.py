"""``postier set-permissions``: repair the queue layout to Postfix's owners and modes.

Follows postfix(1) ``set-permissions`` (and postfix-files): every queue directory gets
Postfix's owner (root or ``mail_owner``), ``setgid_group`` where Postfix sets it
(``maildrop`` 1730 and ``public`` 2710), and its mode, so Postfix can run on the queue
again; missing directories are made. Refuses while a Postfix master runs on the queue.
"""

from __future__ import annotations

import sys

from postier import instance
from postier.config.errors import ConfigError
from postier.config.settings import Config
from postier.queue import dirs


def set_permissions(config_dir: str) -> int:
    """Repair the queue directories of ``config_dir``'s instance; prints each change.

    Returns 0, or 1 (with a ``postier: fatal:`` line) when the configuration does not load,
    ``mail_owner`` or ``setgid_group`` is missing, a Postfix master runs, or a file
    system call fails.
    """
    try:
        rt = instance.Runtime.from_config(Config.from_dir(config_dir))
        holder = instance.postfix_master(rt.queue_dir, rt.data_dir)
        if holder is not None:
            raise instance.StartError(holder)
        changes = dirs.set_permissions(rt.queue_dir, rt.uid, rt.setgid_gid)
    except (ConfigError, instance.StartError, OSError) as exc:
        print(f"postier: fatal: {exc}", file=sys.stderr)
        return 1
    for change in changes:
        print(f"postier/set-permissions: {change}", file=sys.stderr)
    return 0
