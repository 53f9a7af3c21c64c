"""Reading a file Postfix's postdrop(1) left in ``maildrop/``: bytes in, records and a message out.

Follows Postfix's record format (postdrop(1), pickup(8), cleanup(8); the record type
list of Postfix's ``rec_type.h``, read for behaviour only): a file is a sequence of
records, each one byte of type, the data length in 7-bit groups (least significant
group first, the high bit set on every group but the last) and the data. postdrop
writes, in order: the envelope segment (``T`` arrival ``SECONDS USECONDS``, ``A``
attributes ``name=value``, ``F`` full name, ``S`` sender, ``R`` recipients, ``O``
original recipient of the next ``R``), ``M`` (the content starts), the message lines
(``N`` a line and its end, ``L`` a piece of a longer line without its end), ``X``
(the extracted segment: recipients that ``sendmail -t`` found in the headers), ``E``.

DSN requests are attributes: ``notify_flags=N`` (before the recipient it is for;
Postfix's bit mask: 1 NEVER, 2 SUCCESS, 4 FAILURE, 8 DELAY), ``dsn_orig_rcpt`` (the
ORCPT of the next recipient), ``ret_flags=N`` (1 FULL, 2 HDRS) and ``envelope_id``.

Pure: ``records`` and ``parse`` take bytes; ``CorruptDropFile`` says why a file is
refused (incomplete, a record cut short, a type out of place, no ``E``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from postier.queue.file import Recipient

REC_TIME = ord("T")
REC_ATTR = ord("A")
REC_FULL = ord("F")
REC_FROM = ord("S")
REC_RCPT = ord("R")
REC_ORCP = ord("O")
REC_MESG = ord("M")
REC_NORM = ord("N")
REC_CONT = ord("L")
REC_XTRA = ord("X")
REC_END = ord("E")
#: Types pickup(8) passes over without meaning (size, content-time, warning, flags, …).
_IGNORED = frozenset(b"CcWfdPpVi<on")

#: The ``notify_flags`` bits (Postfix's DSN_NOTIFY_*), in the order a stored NOTIFY lists them.
NOTIFY_BITS = ((2, "SUCCESS"), (4, "FAILURE"), (8, "DELAY"))
NOTIFY_NEVER = 1
#: The ``ret_flags`` values (Postfix's DSN_RET_*).
RET_VALUES = {1: "FULL", 2: "HDRS"}
#: A length needs at most this many 7-bit groups (Postfix stops at a 32-bit int).
_MAX_LEN_GROUPS = 5


class CorruptDropFile(Exception):
    """The file is not a complete postdrop file; the message says where and why."""


@dataclass
class DropFile:
    """A postdrop file's message.

    ``arrival``: seconds since the epoch (float; 0.0 when the file has no ``T``).
    ``sender``: the envelope sender as given (``""`` null sender, unqualified names as
    typed). ``full_name``: ``sendmail -F`` (``""``). ``recipients``: in file order, the
    extracted ones (``sendmail -t``) last, each with its DSN NOTIFY/ORCPT.
    ``attrs``: every other ``A`` record (``rewrite_context``, …). ``ret``/``envid``:
    DSN RET (``"FULL"``/``"HDRS"``/``""``) and ENVID. ``content``: the message, LF line ends.
    """

    arrival: float = 0.0
    sender: str | None = None
    full_name: str = ""
    recipients: list[Recipient] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
    ret: str = ""
    envid: str = ""
    content: bytes = b""


def records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (type byte, data) of each record; raises ``CorruptDropFile`` on a record
    cut short or a length that does not fit."""
    pos, end = 0, len(data)
    while pos < end:
        rtype = data[pos]
        pos += 1
        length, shift = 0, 0
        for groups in range(_MAX_LEN_GROUPS + 1):
            if groups == _MAX_LEN_GROUPS:
                raise CorruptDropFile(f"record length too long at offset {pos}")
            if pos >= end:
                raise CorruptDropFile(f"record length cut short at offset {pos}")
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + length > end:
            raise CorruptDropFile(f"record of type {chr(rtype)!r} cut short at offset {pos}")
        yield rtype, data[pos:pos + length]
        pos += length


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def notify_text(flags: int) -> str:
    """Postfix's ``notify_flags`` bit mask as a stored NOTIFY (``"SUCCESS,DELAY"``,
    ``"NEVER"``, ``""`` for 0)."""
    if flags & NOTIFY_NEVER:
        return "NEVER"
    return ",".join(name for bit, name in NOTIFY_BITS if flags & bit)


def parse(data: bytes) -> DropFile:
    """The message of a postdrop file; raises ``CorruptDropFile``."""
    drop = DropFile()
    content: list[bytes] = []
    segment = "envelope"  # then "content", "extracted", "end"
    notify = ""
    orcpt = ""
    for rtype, raw in records(data):
        if segment == "end":
            raise CorruptDropFile("data after the end record")
        if segment == "content":
            if rtype == REC_NORM:
                content += (raw, b"\n")
            elif rtype == REC_CONT:
                content.append(raw)
            elif rtype == REC_XTRA:
                segment = "extracted"
            else:
                raise CorruptDropFile(f"record type {chr(rtype)!r} in the message content")
            continue
        if rtype == REC_TIME and segment == "envelope":
            try:
                drop.arrival = float(_text(raw).split()[0])
            except (ValueError, IndexError):
                raise CorruptDropFile(f"bad time record {_text(raw)!r}") from None
        elif rtype == REC_ATTR:
            name, eq, value = _text(raw).partition("=")
            if not eq:
                raise CorruptDropFile(f"bad attribute record {_text(raw)!r}")
            if name == "notify_flags":
                try:
                    notify = notify_text(int(value))
                except ValueError:
                    raise CorruptDropFile(f"bad notify_flags {value!r}") from None
            elif name == "dsn_orig_rcpt":
                orcpt = value
            elif name == "ret_flags":
                drop.ret = RET_VALUES.get(int(value) if value.isdigit() else 0, "")
            elif name == "envelope_id":
                drop.envid = value
            else:
                drop.attrs[name] = value
        elif rtype == REC_FULL and segment == "envelope":
            drop.full_name = _text(raw)
        elif rtype == REC_FROM and segment == "envelope":
            drop.sender = _text(raw)
        elif rtype == REC_ORCP:
            orcpt = orcpt or f"rfc822;{_text(raw)}"
        elif rtype == REC_RCPT:
            drop.recipients.append(Recipient(_text(raw), dsn_notify=notify, dsn_orcpt=orcpt))
            notify, orcpt = "", ""  # both are given again before each recipient
        elif rtype == REC_MESG and segment == "envelope":
            segment = "content"
        elif rtype == REC_END and segment == "extracted":
            segment = "end"
        elif rtype in _IGNORED:
            continue
        else:
            raise CorruptDropFile(f"unexpected record type {chr(rtype)!r} in the {segment} segment")
    if segment != "end":
        raise CorruptDropFile("no end record: the file is incomplete")
    if drop.sender is None:
        raise CorruptDropFile("no sender record")
    drop.content = b"".join(content)
    return drop
