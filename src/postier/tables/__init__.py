"""Lookup tables (library): Postfix's ``type:name`` maps behind one interface.

Follows Postfix's dict(3)/maps(3), DATABASE_README and the *_table(5) pages. How to use
it (for ``transport_maps``, ``relay_recipient_maps``, ``smtp_sasl_password_maps``,
``smtpd_sender_login_maps``, …):

- At start, open a parameter's tables once per process through a ``Tables`` registry:
  ``maps = tables.maps("transport_maps", cfg[TRANSPORT_MAPS])`` -> ``Maps``. A bad
  specification raises ``TableOpenError`` (unknown type, missing file, bad line:
  its ``str()`` names the file and line); ``postier.instance`` turns it into a start
  error naming main.cf's line and the parameter (``check_table_params``), so a
  parameter that takes tables must be listed there.
- Look up with a search order from ``tables.search`` (``transport_keys``,
  ``address_keys``, ``access_keys``, ``alias_keys``): ``maps.search(keys)`` (sync,
  for local and tools) or ``await maps.search_async(keys)`` (an event loop: database
  tables are asked in a thread). One key alone: ``maps.lookup(key)``. The answer is
  the value (``str``) or None (not found).
- A lookup that cannot be answered raises ``TableError``: smtpd answers ``451 4.3.0``,
  a delivery agent defers (``4.3.0``). Never treat it as "not found".

Types (``TYPES`` in ``registry``): ``texthash``, ``hash``/``btree``/``lmdb`` (compiled
by ``postier postmap``: ``NAME.pdb`` for hash and btree, ``NAME.lmdb`` for lmdb, LMDB
storage), ``regexp``, ``pcre``, ``cidr``, ``inline:{…}``, ``static:``,
``unix:passwd.byname``, ``sqlite``, ``pgsql``; ``proxy:`` is accepted and ignored.
"""

from postier.tables.base import Table, TableError, TableOpenError
from postier.tables.maps import Key, Maps
from postier.tables.registry import Tables, open_table, split_spec
from postier.tables.search import (
    SearchSettings,
    Subject,
    access_keys,
    address_keys,
    alias_keys,
    mail_addr_keys,
    transport_keys,
)

__all__ = [
    "Key", "Maps", "SearchSettings", "Subject", "Table", "TableError", "TableOpenError",
    "Tables", "access_keys", "address_keys", "alias_keys", "mail_addr_keys", "open_table",
    "split_spec", "transport_keys",
]
