"""What postier's programs can do, for the values of parameters that name a method or type.

Follows postconf(1) ``-l`` (mailbox lock methods), ``-a`` (SASL server plug-in types) and
``-A`` (SASL client plug-in types): the one home of these lists, read by postconf and by
the programs that check those parameters.
"""

from __future__ import annotations

#: The mailbox lock methods local(8) has, for mailbox_delivery_lock (postconf -l).
LOCK_METHODS: tuple[str, ...] = ("fcntl", "flock", "dotlock")
#: smtpd_sasl_type's values (postconf -a).
SMTPD_SASL_TYPES: tuple[str, ...] = ("cyrus", "dovecot")
#: smtp_sasl_type's values (postconf -A): the SMTP client has no SASL yet.
SMTP_SASL_TYPES: tuple[str, ...] = ()
