"""Where the configuration lives, and the default main.cf/master.cf written into an empty one.

Follows postconf(1)/postfix(1): ``-c config_dir`` first, then the ``MAIL_CONFIG``
environment variable, then the default directory (``/etc/postfix`` for root). An
ordinary user gets a private instance under ``~/.postier`` that listens on an
unprivileged loopback port. The default master.cf follows the layout of master(5).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

from postier.config.params import (
    ALIAS_DATABASE,
    ALIAS_MAPS,
    CONFIG_DIRECTORY,
    DATA_DIRECTORY,
    INET_INTERFACES,
    MAIL_OWNER,
    MAIL_SPOOL_DIRECTORY,
    MYDESTINATION,
    QUEUE_DIRECTORY,
)

ROOT_CONFIG_DIR = CONFIG_DIRECTORY.default
USER_CONFIG_DIR = "~/.postier/etc"


def config_dir(
    arg: str | None, *, env: Mapping[str, str] | None = None, euid: int | None = None
) -> str:
    """The configuration directory: ``arg``, else $MAIL_CONFIG, else the default for this user."""
    if arg:
        return arg
    environ = os.environ if env is None else env
    from_env = environ.get("MAIL_CONFIG")
    if from_env:
        return from_env
    uid = os.geteuid() if euid is None else euid
    if uid == 0:
        return ROOT_CONFIG_DIR
    home = environ.get("HOME") or pwd.getpwuid(uid).pw_dir
    return os.path.join(home, USER_CONFIG_DIR.removeprefix("~/"))


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def default_main_cf(root: bool, instance_dir: str, *, user: str | None = None) -> str:
    """The main.cf that ``postier start`` writes into a configuration directory without one.

    ``instance_dir`` is the parent of the configuration directory; an ordinary user's
    queue and mailboxes live under it.
    """
    if root:
        settings = (QUEUE_DIRECTORY, DATA_DIRECTORY, MAIL_SPOOL_DIRECTORY, MAIL_OWNER,
                    INET_INTERFACES, MYDESTINATION, ALIAS_MAPS, ALIAS_DATABASE)
        return """\
# main.cf written by "postier start" because the configuration directory had none.
# Postfix syntax: see postconf(5); "postier postconf -n" shows what is set here.
# Defaults not listed here are Postfix's own (postier postconf -d).

compatibility_level = 3.6
""" + "".join(f"{p.name} = {p.default}\n" for p in settings)
    owner = user or _user_name()
    base = os.path.abspath(instance_dir)
    return f"""\
# main.cf written by "postier start" for a private, unprivileged instance:
# it runs as {owner}, keeps its queue and mailboxes under {base}
# and listens on the loopback interface only (see master.cf for the port).
# Postfix syntax: see postconf(5); "postier postconf -n" shows what is set here.

compatibility_level = 3.6
queue_directory = {base}/spool
data_directory = {base}/data
mail_spool_directory = {base}/mail
mail_owner = {owner}
inet_interfaces = loopback-only
mydestination = {MYDESTINATION.default}
alias_maps =
"""


_INTERNAL_SERVICES = """\
pickup    unix  n       -       {chroot}       60      1       pickup
cleanup   unix  n       -       {chroot}       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       {chroot}       1000?   1       tlsmgr
rewrite   unix  -       -       {chroot}       -       -       trivial-rewrite
bounce    unix  -       -       {chroot}       -       0       bounce
defer     unix  -       -       {chroot}       -       0       bounce
trace     unix  -       -       {chroot}       -       0       bounce
verify    unix  -       -       {chroot}       -       1       verify
flush     unix  n       -       {chroot}       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       {chroot}       -       -       smtp
relay     unix  -       -       {chroot}       -       -       smtp
        -o syslog_name=${{multi_instance_name?{{$multi_instance_name}}:{{postfix}}}}/$service_name
showq     unix  n       -       {chroot}       -       -       showq
error     unix  -       -       {chroot}       -       -       error
retry     unix  -       -       {chroot}       -       -       error
discard   unix  -       -       {chroot}       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       {chroot}       -       -       lmtp
anvil     unix  -       -       {chroot}       -       1       anvil
scache    unix  -       -       {chroot}       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_MASTER_HEADER = """\
# master.cf written by "postier start" because the configuration directory had none.
# Postfix syntax: see master(5); "postier postconf -M" lists the services.
#
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
#               (yes)   (yes)   (no)    (never) (100)
# ==========================================================================
"""


def default_master_cf(root: bool) -> str:
    """The master.cf that ``postier start`` writes next to ``default_main_cf``.

    As root: a stock Postfix layout (smtp on port 25 plus the internal services). As an
    ordinary user: the same, but smtpd listens on port 2525 and nothing is chrooted.
    """
    if root:
        inet = "smtp      inet  n       -       y       -       -       smtpd\n"
        chroot = "y"
    else:
        inet = "2525      inet  n       -       n       -       -       smtpd\n"
        chroot = "n"
    return _MASTER_HEADER + inet + _INTERNAL_SERVICES.format(chroot=chroot)
