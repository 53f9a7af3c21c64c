"""The one way into the queue: content in, headers processed, a committed queue file out.

Follows Postfix's cleanup(8) (header processing, the ``message-id=`` log line, the
queue file made durable before the client is told) and its ``qmgr`` trigger (a
datagram to ``public/qmgr``, as Postfix's mail_trigger(3)); RFC 5321 section 4.4 for
the Received: header (``cleanup.headers``). postier has no cleanup process: each
program that brings mail in (smtpd; qmgr for bounces; later pickup) uses this library.

Two forms:

* ``Cleanup.open(client=…)`` → ``CleanupMessage``, fed as the content arrives::

      msg = cleanup.open(client="host[192.0.2.1]")   # QID: client=… logged
      msg.begin_content(Received(…))                  # the Received: header first
      msg.write(chunk) …                              # through HeaderProcessor
      msg.end_content()
      if msg.error: … msg.abort()                     # a write failed: nothing queued
      queue_id = msg.commit(envelope)                 # blocking: run it in a thread

  smtpd opens the message at the first accepted RCPT (the queue ID is known and logged
  at once), begins the content at DATA, and runs ``commit`` in an executor, shielded
  from the session's cancellation.
* ``Cleanup.enqueue(envelope, content)`` does all of that for a whole message given as
  an iterable of bytes (or a function of the new queue ID returning one, for content
  that names its own queue ID, as a bounce does).

Write errors during the content do not raise: the first is kept in
``CleanupMessage.error`` (the caller reads the rest of the message and refuses it at
the end, as cleanup(8) reports ``CLEANUP_STAT_WRITE`` at the end), and ``commit``
raises it. ``commit`` is the one step that acknowledges: the envelope is appended,
the file fsynced, renamed to ``incoming/QUEUE_ID`` and ``incoming/`` fsynced through
the process's ``GroupSync``; then ``message-id=`` is logged and qmgr triggered. Any
failure in ``commit`` removes the file (``abort``), so that nothing the caller was not
told about is delivered. ``abort`` is idempotent and never raises for a missing file.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from postier.cleanup.actions import AccessActions
from postier.cleanup.headers import HeaderProcessor, received_header
from postier.cleanup.rewrite import AddressRewriting, unique_recipients
from postier.config.params import HOPCOUNT_LIMIT
from postier.queue import dirs
from postier.queue.file import (
    ATTR_SMTPUTF8,
    SMTPUTF8_REQUIRED,
    Envelope,
    GroupSync,
    QueueWriter,
)
from postier.rewrite.address import append_domain
from postier.rewrite.canonical import Canonical
from postier.rewrite.virtual import ExpansionError
from postier.tables import TableError

#: A whole message's content: bytes, or a function of the new queue ID giving them.
Content = Iterable[bytes] | Callable[[str], Iterable[bytes]]


class LogSink(Protocol):
    """Where the ``client=``, ``message-id=`` and trigger warning lines go (``postier.log.Log``)."""

    def info(self, text: str) -> None: ...

    def warning(self, text: str) -> None: ...

    def for_program(self, program: str) -> LogSink:
        """The same output under another program name (``postfix/cleanup``)."""
        ...


class Trigger(Protocol):
    """Tells the queue manager that ``queue_id`` is in ``incoming/``; never raises."""

    def notify(self, queue_id: str) -> None: ...


class QmgrTrigger:
    """The datagram with the ASCII queue ID to ``QUEUE_DIR/public/qmgr``.

    One unbound, non-blocking unix datagram socket per process. A failure (qmgr down or
    busy) is logged as a warning and otherwise ignored: qmgr's periodic scan of
    ``incoming/`` finds the file.
    """

    def __init__(self, queue_dir: str, log: LogSink) -> None:
        self.path = dirs.public_path(queue_dir, "qmgr")
        self.log = log
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def notify(self, queue_id: str) -> None:
        try:
            self.sock.sendto(queue_id.encode("ascii"), self.path)
        except OSError as exc:
            self.log.warning(f"{queue_id}: cannot trigger qmgr: {exc.strerror}")

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Received:
    """What the Received: header says (``cleanup.headers.received_header``), queue ID aside.

    ``recipient`` is named (``for <…>``) only when the message has exactly one.
    """

    helo: str
    client_name: str
    client_addr: str
    protocol: str
    by_host: str
    mail_name: str
    recipient: str | None
    when: datetime
    tls: str | None = None
    tls_peer: str | None = None  # the client certificate clause (with ``tls``)
    authenticated_sender: str | None = None  # smtpd_sasl_authenticated_header


@dataclass(frozen=True)
class Qualify:
    """How envelope addresses are completed on the way in, as Postfix's cleanup(8) asks
    trivial-rewrite(8) in its "local" context (postconf(5) ``myorigin``,
    ``append_at_myorigin``, ``append_dot_mydomain``, ``mydomain``).

    smtpd's restrictions see each address as the client sent it (``RCPT TO:<user>`` is
    not fully qualified for ``reject_non_fqdn_recipient``); it is qualified here, once.
    """

    myorigin: str
    append_at_myorigin: bool = True
    append_dot_mydomain: bool = False
    mydomain: str = ""
    #: trivial-rewrite's resolve step (``allow_percent_hack``, ``swap_bangpath``):
    #: ``user%remote@local`` -> ``user@remote``; None: addresses keep their routing
    resolve: Callable[[str], str] | None = None

    def address(self, address: str) -> str:
        """``user`` -> ``user@$myorigin`` (with ``append_at_myorigin``); ``user@host`` ->
        ``user@host.$mydomain`` (with ``append_dot_mydomain``); ``""`` stays ``""``; a
        quoted local part is kept quoted."""
        if not address:
            return address
        if "@" not in address and not self.append_at_myorigin:
            return address
        return append_domain(address, self.myorigin,
                             append_dot_mydomain=self.append_dot_mydomain,
                             mydomain=self.mydomain)

    def recipient(self, address: str) -> str:
        """A recipient qualified (``address``) with its sender-specified routing in a
        local domain taken (``resolve``: ``victim%example.org@example.com`` ->
        ``victim@example.org``)."""
        if address and self.resolve is not None:
            address = self.resolve(address)
        return self.address(address)

    def envelope(self, envelope: Envelope) -> Envelope:
        """The envelope with its sender and recipients qualified, each keeping the
        address as sent as its original recipient (``orig_to=``); duplicates are left
        to ``unique_recipients`` (commit)."""
        recipients = [dataclasses.replace(r, address=self.recipient(r.address),
                                          orig=r.orig or r.address)
                      for r in envelope.recipients]
        return dataclasses.replace(envelope, sender=self.address(envelope.sender),
                                   recipients=recipients)


class CleanupMessage:
    """One message on its way into the queue; see the module docstring."""

    def __init__(self, cleanup: Cleanup, writer: QueueWriter) -> None:
        self._cleanup = cleanup
        self._writer = writer
        self.headers = HeaderProcessor()
        self.error: OSError | None = None
        self._begun = False
        self._ended = False
        self._own_received = 0  # the Received: header begin_content put on top
        #: access(5) actions smtpd collected (set before begin_content for PREPEND)
        self.actions = AccessActions()
        self.discarded = False  # commit() dropped it (DISCARD)
        self.held = False  # commit() put it in hold/ (HOLD)
        self._rewrite_error: TableError | None = None  # a header's table lookup failed

    @property
    def queue_id(self) -> str:
        return self._writer.queue_id

    @property
    def message_id(self) -> str | None:
        """The first Message-ID header's value, once the header block went through."""
        return self.headers.message_id

    @property
    def size(self) -> int:
        """Bytes of content written so far (the Received: header included)."""
        return self._writer.size

    def _put(self, data: bytes) -> None:
        if self.error is None:
            try:
                self._writer.write(data)
            except OSError as exc:  # disk full…: the caller refuses the message at the end
                self.error = exc

    @property
    def begun(self) -> bool:
        """``begin_content`` was called (BDAT begins at its first accepted chunk)."""
        return self._begun

    def add_missing_headers(self, sender: str, myhostname: str) -> None:
        """Add the missing Message-Id:, Date: and From: headers to this message (Postfix's
        local_header_rewrite_clients / always_add_missing_headers, decided by the caller);
        ``sender`` is qualified as the envelope will be. Call before the content."""
        h = self.headers
        h.add_missing, h.queue_id, h.myhostname = True, self.queue_id, myhostname
        q = self._cleanup.qualify
        h.sender = q.address(sender) if q is not None else sender

    def rewrite_headers(self) -> None:
        """Complete the addresses of this message's sender and recipient headers
        (``Qualify``) and map them through the canonical maps (``cleanup.rewrite``): for
        clients that ``local_header_rewrite_clients`` lets rewrite headers, decided by
        the caller. Call before the content."""
        rewriting = self._cleanup.rewriting
        if rewriting is None:
            if self._cleanup.qualify is None:
                return
            rewriting = AddressRewriting(Canonical(), None, self._cleanup.qualify.address)

        def rewrite(name: str, header: bytes) -> bytes:
            if self._rewrite_error is not None:
                return header
            try:
                return rewriting.header(name, header, self._warn)
            except TableError as exc:
                self._rewrite_error = exc
                return header

        self.headers.rewrite = rewrite

    def _warn(self, text: str) -> None:
        if self._cleanup.cleanup_log is not None:
            self._cleanup.cleanup_log.warning(f"{self.queue_id}: {text}")

    def begin_content(self, received: Received | None = None) -> None:
        """Start the content, with a Received: header on top when ``received`` is given."""
        if self._begun:
            raise ValueError("content already begun")
        self._begun = True
        if self.actions.prepend:  # access(5) PREPEND: above smtpd's Received: header
            self._put(self.actions.header_lines())
        if received is not None:
            self._own_received = 1
            self._put(received_header(
                helo=received.helo, client_name=received.client_name,
                client_addr=received.client_addr, protocol=received.protocol,
                by_host=received.by_host, mail_name=received.mail_name,
                queue_id=self.queue_id, recipient=received.recipient, when=received.when,
                tls=received.tls, tls_peer=received.tls_peer,
                authenticated_sender=received.authenticated_sender,
            ))

    def write(self, data: bytes) -> None:
        """Stream a piece of the content (LF line ends) through header processing."""
        if not self._begun:
            self.begin_content()
        if self.error is None:
            self._put(self.headers.feed(data))

    def end_content(self) -> None:
        """The content is complete: flush what header processing still holds. Idempotent."""
        if not self._begun:
            self.begin_content()
        if not self._ended:
            self._ended = True
            if self.error is None:
                self._put(self.headers.end())

    @property
    def hops(self) -> int:
        """Received: headers in the primary header block, our own included."""
        return self.headers.hops + self._own_received

    @property
    def too_many_hops(self) -> bool:
        """hopcount_limit reached (postconf(5)): the message must be refused, as Postfix's
        cleanup(8) does at the end of the content (``554 5.4.0 Error: too many hops``,
        ``warning: QID: message rejected: hopcount exceeded``). Meaningful once the
        header block went through (after ``end_content``)."""
        limit = self._cleanup.hopcount_limit
        return limit > 0 and self.hops >= limit

    def commit(self, envelope: Envelope) -> str:
        """Make the message durable, visible and known to qmgr; returns its queue ID.

        Blocking (fsync of the file and of ``incoming/``, table lookups): call it off the
        event loop. Raises ``OSError`` (a write error kept from the content, or the
        commit's own), ``rewrite.virtual.ExpansionError`` (virtual alias expansion looped
        or grew too large) or ``tables.TableError`` (a canonical or virtual alias table
        failed; both logged as Postfix's warning); the file is removed then. Logs
        ``QUEUE_ID: message-id=…`` when there is one.
        """
        try:
            self.end_content()
            if self.error is not None:
                raise self.error
            if self._cleanup.qualify is not None:
                envelope = self._cleanup.qualify.envelope(envelope)
            envelope = self.actions.envelope(envelope)
            rewriting = self._cleanup.rewriting
            if self._rewrite_error is not None:
                raise self._rewrite_error
            if rewriting:
                assert rewriting is not None
                envelope = self._rewrite_envelope(rewriting, envelope)
            envelope = dataclasses.replace(
                envelope, recipients=unique_recipients(envelope.recipients))
            if self._cleanup.detects_smtputf8(envelope, headers_utf8=self.headers.utf8):
                envelope = dataclasses.replace(
                    envelope, attrs={**envelope.attrs, ATTR_SMTPUTF8: SMTPUTF8_REQUIRED})
            if self.actions.discard is not None:  # accepted, never delivered
                self.abort()
                self.discarded = True
                return self.queue_id
            self.held = self.actions.hold is not None
            queue_id = self._writer.commit(envelope, self._cleanup.incoming_sync,
                                           state="hold" if self.held else "incoming")
        except BaseException:
            self.abort()
            raise
        cleanup = self._cleanup
        if cleanup.cleanup_log is not None and self.headers.message_id:
            cleanup.cleanup_log.info(f"{queue_id}: message-id={self.headers.message_id}")
        if self.held:  # in hold/ until postsuper -H; qmgr is not told
            return queue_id
        if cleanup.trigger is not None:
            cleanup.trigger.notify(queue_id)
        return queue_id

    def _rewrite_envelope(self, rewriting: AddressRewriting, envelope: Envelope) -> Envelope:
        try:
            return rewriting.envelope(envelope, self._warn)
        except ExpansionError as exc:
            self._warn(str(exc))
            raise
        except TableError as exc:
            self._warn(f"address rewriting table lookup problem -- message not accepted, "
                       f"try again later: {exc}")
            raise

    def abort(self) -> None:
        """Forget the message: the file is closed and removed unless committed. Idempotent."""
        self._writer.abort()


class Cleanup:
    """A process's way into the queue: the queue directory, its group commit, the trigger.

    ``log`` receives the ``client=`` line as the calling program (``postfix/smtpd``) and,
    under the program name ``cleanup`` as Postfix's cleanup(8), the ``message-id=`` line
    (``None``: no lines);
    ``trigger`` is told of each committed message (``None``: nobody is, as for qmgr's own
    bounces, which qmgr schedules itself). ``qualify``: how envelope addresses are
    completed at ``commit`` (``None``: they are written as given). ``hopcount_limit``:
    ``CleanupMessage.too_many_hops`` (0: no limit). ``smtputf8_autodetect``: Postfix's
    ``smtputf8_autodetect_classes`` (``smtpd``, ``bounce``, …, ``all``), see
    ``detects_smtputf8``. ``rewriting``: canonical maps and virtual alias expansion
    (``cleanup.rewrite``; ``None``: none), applied at ``commit`` after ``qualify``.
    ``fsync=False`` is for tests only.
    """

    def __init__(
        self, queue_dir: str, *, log: LogSink | None, trigger: Trigger | None,
        fsync: bool = True, long_queue_ids: bool = False, qualify: Qualify | None = None,
        hopcount_limit: int = HOPCOUNT_LIMIT.default_value(),
        smtputf8_autodetect: Iterable[str] = (),
        rewriting: AddressRewriting | None = None,
    ) -> None:
        self.queue_dir = queue_dir
        self.log = log
        self.cleanup_log = log.for_program("cleanup") if log is not None else None
        self.trigger = trigger
        self.fsync = fsync
        self.long_queue_ids = long_queue_ids
        self.qualify = qualify
        self.hopcount_limit = hopcount_limit
        self.smtputf8_autodetect = frozenset(c.lower() for c in smtputf8_autodetect)
        self.rewriting = rewriting
        self.incoming_sync = GroupSync(os.path.join(queue_dir, "incoming"))

    def detects_smtputf8(self, envelope: Envelope, *, headers_utf8: bool) -> bool:
        """Does the message require SMTPUTF8 (``queue.file.SMTPUTF8_REQUIRED``)? As
        Postfix 3.7's cleanup(8) with ``smtputf8_autodetect_classes``, whether or not the
        client sent SMTPUTF8: when the message's origin class is listed (``origin``
        attribute; smtpd's mail has none: ``smtpd``) or ``all`` is, and its sender, a
        recipient or a header (``headers_utf8``) is not ASCII."""
        if not self.smtputf8_autodetect:
            return False
        origin = envelope.attrs.get("origin", "smtpd")
        if origin not in self.smtputf8_autodetect and "all" not in self.smtputf8_autodetect:
            return False
        return headers_utf8 or not envelope.sender.isascii() or not all(
            r.address.isascii() for r in envelope.recipients)

    def open(self, *, client: str | None = None) -> CleanupMessage:
        """A new message with its queue ID; logs ``QUEUE_ID: client=CLIENT`` when given.

        Raises ``OSError`` when the queue file cannot be created.
        """
        writer = QueueWriter.create(
            self.queue_dir, fsync=self.fsync, long_queue_ids=self.long_queue_ids
        )
        if client is not None and self.log is not None:
            self.log.info(f"{writer.queue_id}: client={client}")
        return CleanupMessage(self, writer)

    def enqueue(
        self, envelope: Envelope, content: Content, *, received: Received | None = None,
        client: str | None = None,
    ) -> str:
        """Queue a whole message in one call; returns its queue ID. Blocking.

        ``content`` is an iterable of byte strings (LF line ends), or a function called
        once with the new queue ID that returns one. Raises ``OSError`` when the queue
        file cannot be written, or whatever reading ``content`` raises; nothing is
        queued then.
        """
        msg = self.open(client=client)
        try:
            msg.begin_content(received)
            chunks = content(msg.queue_id) if callable(content) else content
            for chunk in chunks:
                msg.write(chunk)
            return msg.commit(envelope)
        except BaseException:
            msg.abort()
            raise
