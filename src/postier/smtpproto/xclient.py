"""The attributes of XCLIENT and XFORWARD and of ETRN's argument: syntax only (pure).

Follows Postfix 3.7's XCLIENT_README and XFORWARD_README (attribute names, the
``[UNAVAILABLE]``/``[TEMPUNAVAIL]`` values, xtext encoding of RFC 3461 section 4, the
501 replies, checked side by side with Postfix 3.7) and RFC 1985 (ETRN). Who may use
the commands, and what the session does with the attributes, is the smtpd shell's.

``parse_attributes(XCLIENT, words)`` gives ``{NAME: decoded value}`` (names upper-cased,
the special values kept as they are), or the reply refusing the command: an empty
value or a word without ``=`` (``Error: attribute=value expected``), an unknown name
(``Bad XCLIENT attribute name: FOO``), a value whose syntax is bad (``Bad ADDR syntax:
VALUE``, the value as sent). As Postfix 3.7 (checked side by side): xtext ``+XX`` takes
upper- or lower-case hex digits and a value that is not valid xtext is taken as sent;
ADDR and DESTADDR are an IPv4 address (four decimal fields up to 255, the first not 0,
read as the C library reads it: ``010.0.0.1`` is 8.0.0.1) or ``IPV6:`` and an IPv6
address, of a family ``inet_protocols`` enables (``IPV6:2001:db8::1`` is refused with
``ipv4`` alone, ``10.0.0.1`` with ``ipv6`` alone), normalized (``IPV6:::ffff:1.2.3.4``
is 1.2.3.4 when IPv4 is enabled); ``[TEMPUNAVAIL]`` is taken by XCLIENT's NAME and
REVERSE_NAME only, ``[UNAVAILABLE]`` by every attribute but XCLIENT's PROTO.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
from collections.abc import Callable, Mapping, Sequence

from postier.rewrite.address import invalid_hostname_problem, valid_hostname
from postier.smtpproto import replies
from postier.smtpproto.replies import Reply

UNAVAILABLE = "[UNAVAILABLE]"  # the attribute has no value (e.g. no reverse name)
TEMPUNAVAIL = "[TEMPUNAVAIL]"  # its lookup failed for now (NAME, REVERSE_NAME)
_SPECIAL = (UNAVAILABLE, TEMPUNAVAIL)


class Command(enum.Enum):
    XCLIENT = "XCLIENT"
    XFORWARD = "XFORWARD"


#: The attribute names each command takes, in the order its EHLO keyword lists them.
ATTRIBUTES: Mapping[Command, tuple[str, ...]] = {
    Command.XCLIENT: ("NAME", "ADDR", "PROTO", "HELO", "REVERSE_NAME", "PORT", "LOGIN",
                      "DESTADDR", "DESTPORT"),
    Command.XFORWARD: ("NAME", "ADDR", "PROTO", "HELO", "SOURCE", "PORT", "IDENT"),
}

_XTEXT = re.compile(r"\+([0-9A-F]{2})")
_XTEXT_ANY_CASE = re.compile(r"\+([0-9A-Fa-f]{2})")
_IPV4 = re.compile(r"[0-9]+(?:\.[0-9]+){3}")

#: The address families ``inet_protocols`` enables (4, 6), as ``inet_families`` gives.
Families = frozenset[int]
BOTH: Families = frozenset((4, 6))


def inet_families(inet_protocols: Sequence[str]) -> Families:
    """``{4, 6}`` for ``inet_protocols`` words (``all``, ``ipv4``, ``ipv6``; case
    ignored); both when none is known (the caller's config check refuses the rest)."""
    words = {w.lower() for w in inet_protocols}
    if "all" in words:
        return BOTH
    found = frozenset(f for f, w in ((4, "ipv4"), (6, "ipv6")) if w in words)
    return found or BOTH
_PROTO_MAX = 64  # XFORWARD PROTO: any name up to this long


def ehlo_keyword(command: Command) -> str:
    """``XCLIENT NAME ADDR …``: the EHLO line advertising ``command``."""
    return " ".join((command.value, *ATTRIBUTES[command]))


def xtext_decode(text: str) -> str | None:
    """RFC 3461 4 xtext: ``+XX`` (two upper-case hex digits) is that character; a ``+``
    not so followed, or a character outside ``!``..``~``, makes it invalid (None)."""
    if any(not "!" <= c <= "~" for c in text):
        return None
    return _decode_plus(text, _XTEXT)


def _xtext_or_raw(text: str) -> str:
    """Postfix's reading of an XCLIENT/XFORWARD value: ``+XX`` (hex digits of either
    case) is that character; a value that is not such xtext is taken as sent."""
    decoded = _decode_plus(text, _XTEXT_ANY_CASE)
    return text if decoded is None else decoded


def _decode_plus(text: str, plus: re.Pattern[str]) -> str | None:
    """``text`` with each ``+XX`` that ``plus`` matches replaced by its character; None
    when a ``+`` is not so followed."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "+":
            m = plus.match(text, i)
            if m is None:
                return None
            out.append(chr(int(m.group(1), 16)))
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def normalize_address(value: str, families: Families = BOTH) -> str | None:
    """An ADDR/DESTADDR value as Postfix 3.7 normalizes it (``1.2.3.4``,
    ``IPV6:2001:db8::1``, ``[UNAVAILABLE]``), or None when it is bad or of a family
    ``families`` does not enable."""
    if value == UNAVAILABLE:
        return value
    if value[:5].upper() == "IPV6:":
        text = value[5:]
        if not text or any(c not in "0123456789abcdefABCDEF:." for c in text):
            return None  # no zone index, no brackets
        try:
            addr = ipaddress.IPv6Address(text)
        except ValueError:
            return None
        if addr.ipv4_mapped is not None and 4 in families:
            return str(addr.ipv4_mapped)
        if 6 not in families:
            return None
        return "IPV6:" + socket.inet_ntop(socket.AF_INET6, addr.packed)
    if 4 not in families or not _IPV4.fullmatch(value):
        return None
    fields = [int(f) for f in value.split(".")]
    if fields[0] == 0 or any(f > 255 for f in fields):
        return None
    try:  # the C library's reading: a leading 0 is octal
        return socket.inet_ntoa(socket.inet_aton(value))
    except OSError:
        return None


def _hostname(value: str, specials: tuple[str, ...] = _SPECIAL) -> bool:
    return value in specials or (value not in _SPECIAL and valid_hostname(value))


def _port(value: str) -> bool:
    # As Postfix 3.7: digits, at most five of them (99999 passes).
    return value == UNAVAILABLE or (value.isascii() and value.isdigit() and len(value) <= 5)


def _any(value: str) -> bool:
    return True


_CHECKS: Mapping[Command, Mapping[str, Callable[[str], bool]]] = {
    Command.XCLIENT: {
        "NAME": _hostname, "REVERSE_NAME": _hostname,
        "PORT": _port, "DESTPORT": _port,
        "PROTO": lambda v: v.upper() in ("SMTP", "ESMTP"),
        "HELO": _any, "LOGIN": _any,
    },
    Command.XFORWARD: {
        "NAME": lambda v: _hostname(v, (UNAVAILABLE,)), "PORT": _port,
        "PROTO": lambda v: len(v) <= _PROTO_MAX,
        "HELO": _any, "IDENT": _any,
        "SOURCE": lambda v: v.upper() in ("LOCAL", "REMOTE", UNAVAILABLE),
    },
}
_ADDRESSES: Mapping[Command, tuple[str, ...]] = {
    Command.XCLIENT: ("ADDR", "DESTADDR"),
    Command.XFORWARD: ("ADDR",),
}


def parse_attributes(command: Command, words: Sequence[str],
                     families: Families = BOTH) -> dict[str, str] | Reply:
    """``{NAME: value}`` for ``NAME=value`` words (xtext decoded, addresses normalized
    for ``families``, the later of a repeated name wins), or the 501 refusing the
    command; ``words`` is not empty (the caller answers a command without attributes
    with its own syntax reply)."""
    checks = _CHECKS[command]
    out: dict[str, str] = {}
    for word in words:
        name, equal, raw = word.partition("=")
        if not equal or not raw:
            return replies.ATTRIBUTE_VALUE_EXPECTED
        key = name.upper()
        value = _xtext_or_raw(raw)
        if key in _ADDRESSES[command]:
            address = normalize_address(value, families)
            if address is None:
                return replies.bad_attribute_value(key, raw)
            out[key] = address
            continue
        check = checks.get(key)
        if check is None:
            return replies.bad_attribute_name(command.value, name)
        if not check(value):
            return replies.bad_attribute_value(key, raw)
        if key in ("PROTO", "SOURCE"):
            value = value.upper()
        out[key] = value
    return out


def address_value(value: str) -> str:
    """An ADDR/DESTADDR value as the session keeps it: ``IPV6:`` dropped, ``unknown``
    for ``[UNAVAILABLE]``."""
    if value == UNAVAILABLE:
        return "unknown"
    return value[5:] if value[:5].upper() == "IPV6:" else value


def etrn_site(argument: str) -> str | None:
    """The site of ``ETRN argument`` (RFC 1985: one ``@``/``#`` prefix dropped), when it
    is a hostname or an address literal (``[1.2.3.4]``, Postfix's extension); None when
    it is neither (``501 Error: invalid parameter syntax``)."""
    site = argument[1:] if argument[:1] in ("@", "#") else argument
    if valid_hostname(site):
        return site
    if site.startswith("[") and invalid_hostname_problem(site) is None:
        return site
    return None
