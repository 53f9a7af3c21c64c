"""Envelope addresses: split, qualify and check addresses and hostnames (pure).

Follows RFC 5321 section 4.1.2 (Mailbox, Quoted-string, address literals) and
section 4.1.1.3 / Appendix C (source routes, which are accepted and ignored),
Postfix's trivial-rewrite(8) and postconf(5) (``myorigin``, ``append_dot_mydomain``),
and the hostname rules of Postfix's valid_hostname() as documented for
``reject_invalid_helo_hostname`` in postconf(5).

Sender-specified routing in a local domain (``user%remote@local``, ``remote!user@local``)
follows trivial-rewrite(8)'s resolve loop and postconf(5) ``allow_percent_hack`` and
``swap_bangpath`` (``routing_step``, ``resolve_routing``).

Addresses are kept in *internal* form: a quoted localpart is unquoted
(``"a b"@example.com`` has localpart ``a b``); ``external()`` quotes it again.
Domains compare case-insensitively (``fold_domain``); localparts are preserved
as written and compared case-insensitively only where Postfix does (local users).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# Postfix's limits for valid_hostname(): whole name and one label.
HOSTNAME_MAX_LENGTH = 255
LABEL_MAX_LENGTH = 63

# RFC 5321 atext (plus "." between atoms): what a localpart may hold unquoted; RFC 6531
# section 3.3 adds UTF8-non-ascii to atext (every code point above U+007F).
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-"
_DOT_ATOM = re.compile(rf"^[{_ATEXT}]+(\.[{_ATEXT}]+)*$")


@dataclass(frozen=True)
class Address:
    """An envelope address in internal form.

    ``domain`` is ``None`` when the address has no ``@`` (an unqualified ``user``);
    the null sender ``<>`` is ``Address("", None)``.
    """

    localpart: str
    domain: str | None

    @property
    def is_null(self) -> bool:
        return not self.localpart and self.domain is None

    @property
    def is_literal(self) -> bool:
        """The domain is an address literal, ``[1.2.3.4]`` or ``[IPv6:…]``."""
        return self.domain is not None and self.domain.startswith("[")

    def internal(self) -> str:
        """``local@domain`` without quoting (Postfix's internal form)."""
        if self.domain is None:
            return self.localpart
        return f"{self.localpart}@{self.domain}"

    def external(self) -> str:
        """``local@domain`` with the localpart quoted when RFC 5321 requires it."""
        local = quote_localpart(self.localpart) if self.localpart else ""
        if self.domain is None:
            return local
        return f"{local}@{self.domain}"

    def __str__(self) -> str:
        return self.internal()


def strip_source_route(text: str) -> str:
    """``@a,@b:user@c`` → ``user@c`` (RFC 5321 Appendix C: the route is ignored)."""
    if text.startswith("@"):
        colon = _find_unquoted(text, ":")
        if colon >= 0:
            return text[colon + 1 :]
    return text


def parse_address(text: str) -> Address:
    """Split an envelope address (the text between ``<`` and ``>``) into its parts.

    Surrounding angle brackets are tolerated and removed. The domain is the text
    after the last ``@`` that is not inside a quoted string; a quoted localpart is
    unquoted (backslash escapes resolved). Nothing is rejected here: syntax
    checks belong to the SMTP parser and to the restrictions.
    """
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    text = strip_source_route(text)
    if not text:
        return Address("", None)
    at = _find_unquoted(text, "@", last=True)
    if at < 0:
        return Address(unquote_localpart(text), None)
    return Address(unquote_localpart(text[:at]), text[at + 1 :])


def unquoted_chars(text: str) -> Iterator[tuple[int, str]]:
    """``(index, character)`` of each character of ``text`` outside double quotes and
    not escaped by a backslash (quotes and backslashes themselves not yielded)."""
    quoted = escaped = False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif not quoted:
            yield i, c


def _find_unquoted(text: str, char: str, *, last: bool = False) -> int:
    """Index of the first (or last) ``char`` outside double quotes, or -1."""
    found = -1
    for i, c in unquoted_chars(text):
        if c == char:
            if not last:
                return i
            found = i
    return found


def unquote_localpart(local: str) -> str:
    """Remove RFC 5321 quoting: ``"a b"`` → ``a b``, ``"a\\"b"`` → ``a"b``."""
    if '"' not in local and "\\" not in local:
        return local
    out: list[str] = []
    escaped = False
    for c in local:
        if escaped:
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c != '"':
            out.append(c)
    return "".join(out)


def quote_localpart(local: str) -> str:
    """Quote a localpart when it is not an RFC 5321 Dot-string (RFC 6531: UTF-8 letters
    need no quotes, ``jérôme`` stays ``jérôme``; controls and separators, ASCII or not,
    are quoted)."""
    if _DOT_ATOM.fullmatch(local) and local.isprintable():
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def fold_domain(domain: str) -> str:
    """The form domains are compared in: lower case, without a trailing dot."""
    return domain.lower().rstrip(".")


def same_domain(a: str, b: str) -> bool:
    return fold_domain(a) == fold_domain(b)


def literal_address(domain: str) -> str | None:
    """The IP address inside an address literal (``[1.2.3.4]``, ``[IPv6:…]``), else None.

    Returns the address in ``ipaddress`` normal form, or None when ``domain`` is
    not an address literal holding a valid IP address.
    """
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            return str(ipaddress.IPv6Address(inner[5:]))
        except ValueError:
            return None
    if valid_ipv4_hostaddr(inner):  # leading zeros too: [127.000.000.001] (Postfix)
        return str(ipaddress.IPv4Address(".".join(str(int(part)) for part in inner.split("."))))
    # Postfix also accepts [::1] without the IPv6: tag.
    try:
        return str(ipaddress.IPv6Address(inner))
    except ValueError:
        return None


def valid_address_literal(domain: str) -> bool:
    return literal_address(domain) is not None


_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")


def valid_hostname(name: str) -> bool:
    """Postfix's valid_hostname(): the syntax of a host or domain name.

    At most 255 characters; labels of 1 to 63 ASCII letters, digits, ``-`` or ``_``,
    separated by single dots (none first or last); no label begins or ends with
    ``-``; not all digits and dots (``1.2.3.4`` is no hostname).
    """
    if not name or len(name) > HOSTNAME_MAX_LENGTH:
        return False
    numeric = True
    for label in name.split("."):
        if not label or len(label) > LABEL_MAX_LENGTH:
            return False
        if any(c not in _ASCII_ALNUM and c not in "-_" for c in label):
            return False
        if label[0] == "-" or label[-1] == "-":
            return False
        if not all(c.isascii() and c.isdigit() for c in label):
            numeric = False
    return not numeric


def valid_ipv4_hostaddr(text: str) -> bool:
    """Postfix's valid_ipv4_hostaddr(): four dot-separated decimal octets of at most
    255 each (leading zeros allowed); a first octet of 0 only in ``0.0.0.0``."""
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part or any(c not in "0123456789" for c in part) or int(part) > 255:
            return False
    return not (int(parts[0]) == 0 and text.strip("0.") != "")


def valid_ipv6_hostaddr(text: str) -> bool:
    """Postfix's valid_ipv6_hostaddr(): at most eight groups of 1-4 hex digits, one
    ``::`` at most, no leading lone ``:``, no zone (``%eth0``), an IPv4 tail only after
    2 to 6 colons. Stricter than ``ipaddress`` in places (``::1:2:3:4:5:6:7`` is
    refused, as by Postfix), looser in others (``::01.2.3.4``)."""
    if not text:
        return False
    colons = 0
    compressed = False
    i, n = 0, len(text)
    group = 0  # hex digits of the group being read
    while i < n:
        c = text[i]
        if c == ":":
            if colons == 0 and group == 0 and i + 1 < n and text[i + 1] in _ASCII_ALNUM:
                return False  # a lone leading ":"
            colons += 1
            if colons > 7:
                return False
            i += 1
            group = 0
            if i < n and text[i] == ":":
                if compressed:
                    return False  # a second "::"
                compressed = True
            continue
        if c == ".":
            if colons < 2 or colons > 6:
                return False
            return valid_ipv4_hostaddr(text[i - group:])
        run = 0
        while i < n and text[i] in _HEX:
            i += 1
            run += 1
        if run == 0 or run > 4:
            return False
        group = run
    if colons < 2:
        return False
    # a trailing ":" is good only as the end of a "::"
    return not (group == 0 and not (compressed and text.endswith("::")))


def valid_hostaddr(text: str) -> bool:
    """Postfix's valid_hostaddr(): an IPv6 address when ``text`` has a colon, else IPv4."""
    return valid_ipv6_hostaddr(text) if ":" in text else valid_ipv4_hostaddr(text)


class HostnameProblem(enum.Enum):
    """What reject_invalid_helo_hostname / reject_non_fqdn_helo_hostname find wrong."""

    INVALID_IP_ADDRESS = "invalid ip address"  # starts with "[": a bad address literal
    INVALID_NAME = "Invalid name"
    NOT_FQDN = "need fully-qualified hostname"


def _literal_problem(name: str) -> HostnameProblem | None:
    """A name starting with ``[``: ``[ipv4]`` or ``[IPv6:ipv6]`` (tag in any case)."""
    inner = name
    if name.startswith("[") and name.endswith("]"):
        inner = name[1:-1]
    if inner[:5].lower() == "ipv6:":
        ok = valid_ipv6_hostaddr(inner[5:])
    else:
        ok = valid_ipv4_hostaddr(inner)
    return None if ok else HostnameProblem.INVALID_IP_ADDRESS


def _without_final_dot(name: str) -> str:
    """``host.`` -> ``host``; ``host..`` stays (Postfix drops one final dot only)."""
    if name.endswith(".") and not name.endswith(".."):
        return name[:-1]
    return name


def invalid_hostname_problem(name: str) -> HostnameProblem | None:
    """reject_invalid_helo_hostname (Postfix's reject_invalid_hostname()): a name
    starting with ``[`` must be a valid address literal; anything else, one final dot
    dropped, a valid hostname or a bare IPv4/IPv6 address. None: acceptable."""
    if name.startswith("["):
        return _literal_problem(name)
    test = _without_final_dot(name)
    if valid_hostname(test) or valid_hostaddr(test):
        return None
    return HostnameProblem.INVALID_NAME


def non_fqdn_hostname_problem(name: str) -> HostnameProblem | None:
    """reject_non_fqdn_helo_hostname (Postfix's reject_non_fqdn_hostname()): a name
    starting with ``[`` must be a valid address literal; anything else, one final dot
    dropped, a valid hostname with a dot (a bare IP address is not). None: acceptable."""
    if name.startswith("["):
        return _literal_problem(name)
    test = _without_final_dot(name)
    if valid_hostname(test) and "." in test:
        return None
    return HostnameProblem.NOT_FQDN


def valid_hostname_or_literal(name: str) -> bool:
    """A HELO argument reject_invalid_helo_hostname accepts."""
    return invalid_hostname_problem(name) is None


def is_fqdn(domain: str | None) -> bool:
    """A domain reject_non_fqdn_sender/_recipient accept (Postfix's
    reject_non_fqdn_address()): an address literal ``[…]``, or, one final dot dropped,
    a valid hostname with a dot. ``localhost``, ``1.2.3.4``, ``""`` and None are not.
    """
    if not domain:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        return True
    test = _without_final_dot(domain)
    return valid_hostname(test) and "." in test


def append_domain(
    address: str, myorigin: str, *, append_dot_mydomain: bool = False, mydomain: str = ""
) -> str:
    """Qualify an address as trivial-rewrite(8) does for envelope addresses.

    ``user`` → ``user@$myorigin``. With ``append_dot_mydomain`` (Postfix ≥ 3.0
    default: no), ``user@host`` → ``user@host.$mydomain`` when ``host`` has no dot.
    The null address stays null; address literals are left alone.
    """
    parsed = parse_address(address)
    if parsed.is_null:
        return ""
    if parsed.domain is None:
        return Address(parsed.localpart, myorigin).external()
    if (
        append_dot_mydomain
        and mydomain
        and not parsed.is_literal
        and "." not in parsed.domain.rstrip(".")
    ):
        return Address(parsed.localpart, f"{parsed.domain}.{mydomain}").external()
    return parsed.external()


def has_sender_routing(localpart: str) -> bool:
    """Sender-specified routing in a localpart (``user@elsewhere``, ``user%elsewhere``, ``a!b``).

    Such recipients are never considered authorized destinations
    (postconf(5) reject_unauth_destination, allow_untrusted_routing = no).
    """
    return any(c in localpart for c in "@%!")


# Enough for any real address: each step drops a domain, so the loop ends anyway.
MAX_ROUTING_STEPS = 64


def routing_step(localpart: str, *, percent_hack: bool, swap_bangpath: bool) -> str | None:
    """One step of trivial-rewrite(8)'s resolve loop for the localpart (internal form,
    unquoted) of an address whose domain is local (or absent): ``user@remote`` stays
    an address, then (``swap_bangpath``) ``site!user`` -> ``user@site`` at the first
    ``!``, then (``percent_hack``) ``user%remote`` -> ``user@remote`` at the last ``%``.
    Returns the next address (external form: a localpart that needs it is quoted), or
    None when the localpart routes nowhere (the address is final here). Empty parts
    stay empty, as Postfix's: ``victim%`` -> ``victim@`` (a bad domain for smtpd's
    syntax check), ``%x`` -> ``@x``."""
    if "@" in localpart:
        user, _, site = localpart.rpartition("@")
    elif swap_bangpath and "!" in localpart:
        site, _, user = localpart.partition("!")
    elif percent_hack and "%" in localpart:
        user, _, site = localpart.rpartition("%")
    else:
        return None
    return Address(user, site).external()


def resolve_routing(address: str, is_local: Callable[[str], bool], *,
                    percent_hack: bool = True, swap_bangpath: bool = True) -> str:
    """The address trivial-rewrite(8)'s resolve step ends with: while the domain is
    local (``is_local(domain)``, the local class: ``mydestination`` and our address
    literals; an unqualified address is local) and the localpart holds sender-specified
    routing, the local domain is stripped and the routing taken
    (``victim%example.org@example.com`` -> ``victim@example.org``,
    ``example.org!victim@example.com`` -> ``victim@example.org``). An address without
    such routing comes back unchanged (the very string given)."""
    current = address
    for _ in range(MAX_ROUTING_STEPS):
        parsed = parse_address(current)
        if parsed.is_null or (parsed.domain is not None and not is_local(parsed.domain)):
            return current
        nxt = routing_step(parsed.localpart, percent_hack=percent_hack,
                           swap_bangpath=swap_bangpath)
        if nxt is None:
            return current
        current = nxt
    return current
