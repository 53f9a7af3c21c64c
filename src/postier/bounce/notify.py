"""The DSN parameters of RFC 3461: NOTIFY, RET, ENVID and ORCPT parsed, and what NOTIFY asks for.

Follows RFC 3461 (section 4 ``xtext``; 4.1 NOTIFY; 4.2 ORCPT; 4.3 RET; 4.4 ENVID),
RFC 6533 (``utf-8`` ORCPT, ``\\x{HEX}``), and Postfix 3.7's smtpd(8) as observed side
by side: keywords and values are case-insensitive; a repeated parameter, ``NEVER``
with another value, an empty NOTIFY or ENVID, an ENVID that decodes to anything but
printable ASCII, an ORCPT without ``type;`` or with a bad xtext are refused; empty
elements of a NOTIFY list are skipped; an ORCPT address may be empty. Values are
stored decoded: ``dsn_notify`` as ``"NEVER"`` or a subset of ``SUCCESS,FAILURE,DELAY``
in that order, ``dsn_orcpt`` as ``type;address``, ``dsn_ret`` as ``FULL``/``HDRS``,
``dsn_envid`` as text.

What NOTIFY asks for is Postfix's bounce(8) rule: without NOTIFY a recipient gets a
failure notice, and a delay notice when ``delay_warning_time`` is set; with NOTIFY it
gets exactly what it lists (none for ``NEVER``).

Pure: strings in, strings out.
"""

from __future__ import annotations

import re

NEVER = "NEVER"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
DELAY = "DELAY"
#: The order in which a stored NOTIFY lists its values.
NOTIFY_VALUES = (SUCCESS, FAILURE, DELAY)
#: Envelope attribute names (``queue.file.Envelope.attrs``) of the MAIL parameters.
ATTR_RET = "dsn_ret"
ATTR_ENVID = "dsn_envid"
RET_VALUES = ("FULL", "HDRS")

# RFC 3461 section 4:  xtext = *( xchar / hexchar ); xchar = "!".."~" except "+" and "=";
# hexchar = "+" 2(%x30-39 / %x41-46). Postfix also takes lower-case hex digits.
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-Fa-f]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-Fa-f]{2})")
# RFC 6533 section 3:  utf-8-addr-xtext: \x{HEX} escapes for what xtext cannot hold.
_UXTEXT_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


def xtext_decode(text: str) -> str | None:
    """``text`` with its ``+HH`` escapes decoded; None when it is not xtext."""
    if _XTEXT.fullmatch(text) is None:
        return None
    return _HEXCHAR.sub(lambda m: chr(int(m.group(1), 16)), text)


def xtext_encode(text: str) -> str:
    """``text`` as xtext: ``+``, ``=``, controls, space and non-ASCII as ``+HH`` (per byte)."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        out.append(ch if 0x21 <= byte <= 0x7E and ch not in "+=" else f"+{byte:02X}")
    return "".join(out)


def _uxtext_decode(text: str) -> str | None:
    try:
        decoded = _UXTEXT_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    except (ValueError, OverflowError):
        return None
    if "\\" in _UXTEXT_ESCAPE.sub("", text):
        return None  # a backslash that starts no escape
    return decoded


def parse_notify(value: str) -> str | None:
    """A NOTIFY value in its stored form (``"NEVER"``, ``"SUCCESS,DELAY"``), or None if bad."""
    seen: set[str] = set()
    for word in value.split(","):
        if not word:
            continue
        upper = word.upper()
        if upper != NEVER and upper not in NOTIFY_VALUES:
            return None
        seen.add(upper)
    if not seen or (NEVER in seen and len(seen) > 1):
        return None
    if NEVER in seen:
        return NEVER
    return ",".join(v for v in NOTIFY_VALUES if v in seen)


def parse_ret(value: str) -> str | None:
    """``FULL`` or ``HDRS`` (any case given), else None."""
    upper = value.upper()
    return upper if upper in RET_VALUES else None


def parse_envid(value: str) -> str | None:
    """The decoded ENVID: non-empty printable ASCII (space included), else None."""
    decoded = xtext_decode(value)
    if not decoded or not all(" " <= c <= "~" for c in decoded):
        return None
    return decoded


def parse_orcpt(value: str) -> str | None:
    """The ORCPT as stored, ``type;decoded-address``, else None.

    The type must be non-empty; the address is xtext (``utf-8``: RFC 6533's escapes).
    """
    addr_type, sep, coded = value.partition(";")
    if not sep or not addr_type:
        return None
    decoded = _uxtext_decode(coded) if addr_type.lower() == "utf-8" else xtext_decode(coded)
    if decoded is None:
        return None
    return f"{addr_type};{decoded}"


def _values(dsn_notify: str) -> frozenset[str]:
    return frozenset(dsn_notify.split(",")) if dsn_notify else frozenset()


def wants_failure(dsn_notify: str) -> bool:
    """Whether a recipient with this stored NOTIFY gets a failure notice (default: yes)."""
    return not dsn_notify or FAILURE in _values(dsn_notify)


def wants_success(dsn_notify: str) -> bool:
    """Whether it gets a success notice (only when NOTIFY lists SUCCESS)."""
    return SUCCESS in _values(dsn_notify)


def wants_delay(dsn_notify: str) -> bool:
    """Whether it gets a delay notice once delay_warning_time has passed (default: yes)."""
    return not dsn_notify or DELAY in _values(dsn_notify)
