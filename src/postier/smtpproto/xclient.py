"""The attributes of XCLIENT and XFORWARD and of ETRN's argument: syntax only (pure).

Follows Postfix 3.7's XCLIENT_README and XFORWARD_README (attribute names, the
``[UNAVAILABLE]``/``[TEMPUNAVAIL]`` values, xtext encoding of RFC 3461 section 4, the
501 replies, checked side by side with Postfix 3.7) and RFC 1985 (ETRN). Who may use
the commands, and what the session does with the attributes, is the smtpd shell's.

``parse_attributes(XCLIENT, words)`` gives ``{NAME: decoded value}`` (names upper-cased,
the special values kept as they are), or the reply refusing the command: an empty
value or a word without ``=`` (``Error: attribute=value expected``), an unknown name
(``Bad XCLIENT attribute name: FOO``), a value whose xtext or syntax is bad (``Bad ADDR
syntax: VALUE``, the value as sent).
"""

from __future__ import annotations

import enum
import ipaddress
import re
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
_PROTO_MAX = 64  # XFORWARD PROTO: any name up to this long


def ehlo_keyword(command: Command) -> str:
    """``XCLIENT NAME ADDR …``: the EHLO line advertising ``command``."""
    return " ".join((command.value, *ATTRIBUTES[command]))


def xtext_decode(text: str) -> str | None:
    """RFC 3461 4 xtext: ``+XX`` (two upper-case hex digits) is that character; a ``+``
    not so followed, or a character outside ``!``..``~``, makes it invalid (None)."""
    if any(not "!" <= c <= "~" for c in text):
        return None
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "+":
            m = _XTEXT.match(text, i)
            if m is None:
                return None
            out.append(chr(int(m.group(1), 16)))
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _hostname(value: str) -> bool:
    return value in _SPECIAL or valid_hostname(value)


def _address(value: str) -> bool:
    """An IPv4 address, ``IPV6:`` and an IPv6 address, or ``[UNAVAILABLE]``."""
    if value == UNAVAILABLE:
        return True
    text = value[5:] if value[:5].upper() == "IPV6:" else value
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    return addr.version == (6 if text is not value else 4)


def _port(value: str) -> bool:
    # As Postfix 3.7: digits, at most five of them (99999 passes).
    return value == UNAVAILABLE or (value.isascii() and value.isdigit() and len(value) <= 5)


def _any(value: str) -> bool:
    return True


_CHECKS: Mapping[Command, Mapping[str, Callable[[str], bool]]] = {
    Command.XCLIENT: {
        "NAME": _hostname, "REVERSE_NAME": _hostname, "ADDR": _address,
        "DESTADDR": _address, "PORT": _port, "DESTPORT": _port,
        "PROTO": lambda v: v.upper() in ("SMTP", "ESMTP"),
        "HELO": _any, "LOGIN": _any,
    },
    Command.XFORWARD: {
        "NAME": _hostname, "ADDR": _address, "PORT": _port,
        "PROTO": lambda v: len(v) <= _PROTO_MAX,
        "HELO": _any, "IDENT": _any,
        "SOURCE": lambda v: v.upper() in ("LOCAL", "REMOTE"),
    },
}


def parse_attributes(command: Command, words: Sequence[str]) -> dict[str, str] | Reply:
    """``{NAME: value}`` for ``NAME=value`` words (xtext decoded, the later of a repeated
    name wins), or the 501 refusing the command; ``words`` is not empty (the caller
    answers a command without attributes with its own syntax reply)."""
    checks = _CHECKS[command]
    out: dict[str, str] = {}
    for word in words:
        name, equal, raw = word.partition("=")
        if not equal or not raw:
            return replies.ATTRIBUTE_VALUE_EXPECTED
        key = name.upper()
        check = checks.get(key)
        if check is None:
            return replies.bad_attribute_name(command.value, name)
        value = xtext_decode(raw)
        if value is None or not check(value):
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
