"""postqueue and mailq: list the queue (Postfix's layouts) and ask the queue manager to flush.

Follows postqueue(1), mailq(1) (sendmail -bp) and showq(8): ``-p`` (and ``mailq``)
prints Postfix's listing byte for byte (``showq_compat``: the heading, ``*`` after the
ID of an active message and ``!`` after a held one, the right-aligned ``(reason)`` line
before the recipients it applies to, the ``-- N Kbytes in M Requests.`` trailer or
``Mail queue is empty``); ``-j`` prints one JSON object per message, Postfix's keys in
Postfix's order and its string quoting. ``-f`` (``postier flush``) asks qmgr to attempt
every deferred message now, ``-i ID`` one message, ``-s SITE`` the deferred messages
with a recipient in domain SITE: the chosen deferred files' time stamps are set to now
and qmgr is told through ``public/qmgr`` (``postier.queue.control``). When the mail
system is down, the listing reads the queue directly after Postfix's warning, and a
flush fails with Postfix's ``fatal: Cannot flush mail queue - mail system is down``
(exit status 69, EX_UNAVAILABLE). ``mailq`` is sendmail's ``-bp``: its ``-C`` may name
main.cf or its directory, and its warnings and errors are postqueue's, as in Postfix.

The formatters (``mailq_lines``, ``json_line``, ``json_quote``) are pure; ``main`` reads
the queue through ``postier.queue.showq``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import NoReturn

from postier.cli import control, newaliases
from postier.config import paths
from postier.config.errors import ConfigError
from postier.config.params import ENABLE_LONG_QUEUE_IDS, QUEUE_DIRECTORY
from postier.config.settings import Config
from postier.queue import control as qmgr_control
from postier.queue import dirs, showq
from postier.queue.flush import FlushTableError, flush_configured, make_site_due
from postier.queue.ids import is_queue_id
from postier.queue.showq import QueuedMessage
from postier.tables import TableOpenError, Tables

EX_UNAVAILABLE = 69  # sysexits.h: what Postfix's postqueue exits with when it cannot flush
DOWN_WARNING = "Mail system is down -- accessing queue directly"
FLUSH_DOWN = "Cannot flush mail queue - mail system is down"

# --- the mailq layout (Postfix's showq_compat) -----------------------------------------------

#: Column widths of the short- and long-queue-ID layouts: (ID, size, arrival time).
_SHORT = (11, 7, 20)
_LONG = (17, 8, 19)
_HEADINGS = {
    _SHORT: ("-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------"),
    _LONG: ("----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------"),
}
#: A ``(reason)`` line ends at this column (it starts further left when longer).
REASON_END = 76


def arrival_text(seconds: int) -> str:
    """``asctime(localtime(seconds))`` without its newline: ``Sun Nov 29 23:57:46 2026``."""
    return time.asctime(time.localtime(seconds))


def printable(text: str) -> str:
    """``text`` with control characters and undecodable bytes (kept as surrogates) shown as
    ``?``, as Postfix's listing shows addresses."""
    return "".join(
        "?" if ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF else c
        for c in text
    )


def _status_flag(message: QueuedMessage) -> str:
    flag = {"active": "*", "hold": "!"}.get(message.queue_name, "")
    return flag + ("#" if message.forced_expire else "")


def mailq_lines(
    messages: Iterable[QueuedMessage], *, long_ids: bool = False,
    when: Callable[[int], str] = arrival_text,
) -> Iterator[str]:
    """The ``postqueue -p`` listing, line by line (each ending in ``\\n``), lazily.

    ``long_ids`` selects the layout of ``enable_long_queue_ids = yes``; ``when`` formats
    an arrival time (tests pass a fixed time zone).
    """
    wid, wsize, wtime = _LONG if long_ids else _SHORT
    blank = f"{'':<{wid}} {'':>{wsize}} {'':<{wtime}} "
    count = total = 0
    for m in messages:
        if count:
            yield "\n"
        else:
            h_id, h_size, h_time, h_who = _HEADINGS[(wid, wsize, wtime)]
            yield f"{h_id:<{wid}} {h_size:>{wsize}} {h_time:<{wtime}} {h_who}\n"
        count += 1
        total += m.message_size
        ident = m.queue_id + _status_flag(m)
        arrival = when(m.arrival_time)[:wtime]
        sender = printable(m.sender)
        yield f"{ident:<{wid}} {m.message_size:>{wsize}} {arrival:>{wtime}} {sender}\n"
        shown = ""
        for r in m.recipients:
            if r.delay_reason != shown:
                shown = r.delay_reason
                reason = printable(shown) or "reason unavailable"
                yield f"{'':>{max(0, REASON_END - len(reason))}}({reason})\n"
            yield f"{blank}{printable(r.address)}\n"
    if count == 0:
        yield "Mail queue is empty\n"
    else:
        yield "\n"
        yield f"-- {total // 1024} Kbytes in {count} Request{'' if count == 1 else 's'}.\n"


# --- the JSON layout (Postfix's showq_json) -------------------------------------------------

_SHORT_ESCAPES = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def json_quote(text: str) -> str:
    """A JSON string body as Postfix writes it: ``\\`` and ``"`` escaped, control characters
    as ``\\n``-style or ``\\u00XX`` escapes (DEL too), other characters as UTF-8; a character
    that cannot be encoded (an undecodable byte kept as a surrogate) becomes ``?``."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F:
            out.append(_SHORT_ESCAPES.get(ch, f"\\u{code:04X}"))
        elif ch in '\\"':
            out.append("\\" + ch)
        elif 0xD800 <= code <= 0xDFFF:
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


def json_line(m: QueuedMessage) -> str:
    """One ``postqueue -j`` line (ending in ``\\n``): Postfix's keys, order and spacing."""
    rcpts = ", ".join(
        f'{{"address": "{json_quote(r.address)}"'
        + (f', "delay_reason": "{json_quote(r.delay_reason)}"' if r.delay_reason else "")
        + "}"
        for r in m.recipients
    )
    return (
        f'{{"queue_name": "{json_quote(m.queue_name)}", '
        f'"queue_id": "{json_quote(m.queue_id)}", '
        f'"arrival_time": {m.arrival_time}, '
        f'"message_size": {m.message_size}, '
        f'"forced_expire": {"true" if m.forced_expire else "false"}, '
        f'"sender": "{json_quote(m.sender)}", '
        f'"recipients": [{rcpts}]}}\n'
    )


# --- flushing -------------------------------------------------------------------------------


class Fatal(Exception):
    """Ends the command: ``postqueue: fatal: TEXT``, exit ``status``."""

    def __init__(self, text: str, status: int = 1) -> None:
        super().__init__(text)
        self.status = status


def _touch(path: str, now: float) -> bool:
    """Make a deferred file due now (its mtime is its next attempt time); False if gone."""
    try:
        os.utime(path, (now, now))
    except FileNotFoundError:
        return False
    return True


def _tell_qmgr(queue_dir: str, *requests: qmgr_control.Request) -> None:
    try:
        qmgr_control.send(queue_dir, qmgr_control.encode(*requests))
    except qmgr_control.QmgrDown:
        raise Fatal(FLUSH_DOWN, EX_UNAVAILABLE) from None
    except OSError as exc:
        raise Fatal(f"{FLUSH_DOWN} ({exc.strerror})", EX_UNAVAILABLE) from None


def flush_all(queue_dir: str) -> None:
    """``postqueue -f``: qmgr takes every deferred message now. Raises ``Fatal`` when down."""
    _tell_qmgr(queue_dir, qmgr_control.Request.SCAN_ALL)


def flush_one(queue_dir: str, queue_id: str) -> None:
    """``postqueue -i ID``: the message, if deferred, is attempted now (nothing otherwise)."""
    if is_queue_id(queue_id):
        _touch(dirs.path(queue_dir, "deferred", queue_id), time.time())
    _tell_qmgr(queue_dir, qmgr_control.Request.SCAN_DEFERRED)


def flush_site(queue_dir: str, site: str) -> int:
    """``postqueue -s SITE``: the deferred messages with a pending recipient in domain SITE
    are attempted now (``queue.flush``); returns how many."""
    count = make_site_due(queue_dir, site)
    _tell_qmgr(queue_dir, qmgr_control.Request.SCAN_DEFERRED)
    return count


def flush(config_dir: str) -> int:
    """``postier flush`` (``postfix flush``): ``postqueue -f`` for ``config_dir``; 0, 69 or 1."""
    return main(["-c", config_dir, "-f"])


# --- the commands ---------------------------------------------------------------------------

USAGE = "postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n{self.prog}: fatal: usage: {self.usage}\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    if prog == "mailq":
        p = _Parser(prog="mailq", usage="mailq [-C config_dir] [-v]",
                    description="List the mail queue (postqueue -p).")
        p.add_argument("-C", "-c", dest="config_dir", metavar="config_dir")
        p.add_argument("-v", action="count", default=0, help="verbose (no effect)")
        p.set_defaults(action="p", arg=None)
        return p
    p = _Parser(prog="postqueue", usage=USAGE,
                description="List the mail queue or have it delivered now.")
    p.add_argument("-c", dest="config_dir", metavar="config_dir")
    p.add_argument("-v", action="count", default=0, help="verbose (no effect)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("-f", dest="action", action="store_const", const="f",
                      help="attempt every deferred message now")
    what.add_argument("-i", dest="queue_id", metavar="queueid",
                      help="attempt this deferred message now")
    what.add_argument("-j", dest="action", action="store_const", const="j",
                      help="list the queue as JSON, one message per line")
    what.add_argument("-p", dest="action", action="store_const", const="p",
                      help="list the queue (mailq's layout)")
    what.add_argument("-s", dest="site", metavar="site",
                      help="attempt now the deferred mail for this destination domain")
    return p


def _list(cfg: Config, config_dir: str, as_json: bool, prog: str) -> int:
    queue_dir = cfg[QUEUE_DIRECTORY]
    if control.running_pid(config_dir) is None:
        print(f"{prog}: warning: {DOWN_WARNING}", file=sys.stderr)
    messages = showq.scan(queue_dir)
    lines = (json_line(m) for m in messages) if as_json else mailq_lines(
        messages, long_ids=cfg[ENABLE_LONG_QUEUE_IDS])
    out = sys.stdout
    try:
        for line in lines:
            out.write(line)
        out.flush()
    except BrokenPipeError:
        # A reader that stopped early (postqueue -p | head) is no error, as in Postfix.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    return 0


def main(argv: list[str] | None = None, prog: str = "postqueue") -> int:
    """``postqueue`` (or, with ``prog="mailq"``, ``mailq``); returns the exit status."""
    args = _parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    # mailq is sendmail -bp, which runs postqueue -p: past its options, every warning
    # and error line is postqueue's, as Postfix 3.7 prints them; -C may name main.cf.
    name = "postqueue"
    if prog == "mailq":
        config_dir = newaliases.sendmail_config_dir(args.config_dir)
    else:
        config_dir = os.path.abspath(paths.config_dir(args.config_dir))
    try:
        cfg = Config.from_dir(config_dir)
        queue_dir = cfg[QUEUE_DIRECTORY]
        if args.action in ("p", "j"):
            return _list(cfg, config_dir, args.action == "j", name)
        if args.action == "f":
            flush_all(queue_dir)
        elif args.queue_id is not None:
            flush_one(queue_dir, args.queue_id)
        else:
            try:  # as Postfix's postqueue: a table that fails is fatal, status 69
                configured = flush_configured(cfg, args.site, Tables().table)
            except (TableOpenError, FlushTableError) as exc:
                raise Fatal(str(exc), EX_UNAVAILABLE) from None
            if not configured:
                # As Postfix: a mail system that is down is said first (the probe is a
                # deferred scan, harmless), then the site that may not be flushed.
                _tell_qmgr(queue_dir, qmgr_control.Request.SCAN_DEFERRED)
                raise Fatal(f'Flush service is not configured for destination "{args.site}"',
                            EX_UNAVAILABLE)
            flush_site(queue_dir, args.site)
        return 0
    except Fatal as exc:
        print(f"{name}: fatal: {exc}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        print(f"{name}: fatal: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"{name}: fatal: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
