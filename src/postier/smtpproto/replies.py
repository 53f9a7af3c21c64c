"""SMTP replies: the one home of every reply code and text postier sends.

Follows RFC 5321 section 4.2 (reply lines), RFC 2034/3463 (enhanced status codes)
and the texts of Postfix's smtpd(8) and smtpd_check (postconf(5): ``*_reject_code``
parameters), so that clients and log parsers see exactly what Postfix says.

Other modules never spell reply text themselves: they use the named replies and
factory functions below. Texts marked "unsure" could not be checked against a
Postfix transcript or manual while writing; they follow Postfix's usual pattern.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# Characters that must never reach the wire inside a reply line (CR/LF would let
# text taken from the client inject reply lines).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply. ``text`` as a tuple makes a multi-line reply.

    ``enhanced`` (RFC 3463 ``class.subject.detail``) is repeated on every line, as
    Postfix does; it is ``None`` for the greeting and the EHLO/HELO replies.
    """

    code: int
    enhanced: str | None
    text: str | tuple[str, ...]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"bad SMTP reply code {self.code}")
        if self.enhanced is not None and (
            not _ENHANCED.match(self.enhanced) or self.enhanced[0] != str(self.code)[0]
        ):
            raise ValueError(f"bad enhanced status code {self.enhanced!r} for {self.code}")
        if isinstance(self.text, tuple) and not self.text:
            raise ValueError("empty multi-line reply")

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    def to_bytes(self) -> bytes:
        lines = self.lines()
        last = len(lines) - 1
        out = []
        for i, line in enumerate(lines):
            line = _UNPRINTABLE.sub("?", line)
            sep = " " if i == last else "-"
            body = f"{self.enhanced} {line}" if self.enhanced else line
            out.append(f"{self.code}{sep}{body}\r\n")
        return "".join(out).encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        """The reply as Postfix logs it (``reject: RCPT from …: 550 5.1.1 <…>: …``)."""
        return " ".join(
            f"{self.code} {self.enhanced} {line}" if self.enhanced else f"{self.code} {line}"
            for line in self.lines()
        )


def _dsn(code: int, detail: str) -> str:
    """``X.detail`` with X the class of ``code`` (4 or 5)."""
    return f"{str(code)[0]}.{detail}"


# --- connection ---------------------------------------------------------------------


def greeting(banner: str) -> Reply:
    """``220 $smtpd_banner`` (``$myhostname ESMTP $mail_name`` by default)."""
    return Reply(220, None, banner)


def timeout(hostname: str) -> Reply:
    return Reply(421, "4.4.2", f"{hostname} Error: timeout exceeded")


def too_many_errors(hostname: str) -> Reply:
    return Reply(421, "4.7.0", f"{hostname} Error: too many errors")


def too_many_connections(hostname: str) -> Reply:
    """A client beyond a service's session limit (postier's process limit; issue 9)."""
    return Reply(421, "4.7.0", f"{hostname} Error: too many connections")


# --- client rate and concurrency limits (smtpd(8) with anvil(8); Postfix 3.7 checked) ---


def client_too_many_connections(hostname: str, addr: str) -> Reply:
    """smtpd_client_connection_count_limit or _rate_limit exceeded, instead of the
    greeting: ``421 4.7.0 HOST Error: too many connections from ADDR``."""
    return Reply(421, "4.7.0", f"{hostname} Error: too many connections from {addr}")


def client_too_much_mail(addr: str) -> Reply:
    """smtpd_client_message_rate_limit exceeded, at MAIL FROM."""
    return Reply(450, "4.7.1", f"Error: too much mail from {addr}")


def client_too_many_recipients(addr: str) -> Reply:
    """smtpd_client_recipient_rate_limit exceeded, at RCPT TO."""
    return Reply(450, "4.7.1", f"Error: too many recipients from {addr}")


def client_too_many_auth(addr: str) -> Reply:
    """smtpd_client_auth_rate_limit exceeded, at AUTH (before any other AUTH check)."""
    return Reply(450, "4.7.1", f"Error: too many AUTH commands from {addr}")


def client_too_many_tls_refused(namaddr: str) -> Reply:
    """smtpd_client_new_tls_session_rate_limit already exceeded: STARTTLS refused
    (``NAME[ADDR]``, not the bare address)."""
    return Reply(454, "4.7.0", f"Error: too many new TLS sessions from {namaddr}")


def client_too_many_tls_sessions(hostname: str, namaddr: str) -> Reply:
    """The new TLS session just negotiated exceeds the rate: said inside TLS, then the
    session ends."""
    return Reply(421, "4.7.0", f"{hostname} Error: too many new TLS sessions from {namaddr}")


def service_unavailable(hostname: str) -> Reply:
    """The reply to every command when smtpd cannot serve (e.g. shutting down)."""
    return Reply(421, "4.3.2", f"{hostname} Service not available, closing transmission channel")


def bare_newline(hostname: str) -> Reply:
    """smtpd_forbid_bare_newline = yes (Postfix 3.9): a command or content line ended in bare LF."""
    return Reply(521, "5.5.2", f"{hostname} Error: bare <LF> received")


BYE = Reply(221, "2.0.0", "Bye")
# smtpd_forbidden_commands (CONNECT GET POST): Postfix hangs up with this text.
FORBIDDEN_COMMAND = Reply(221, "2.7.0", "Error: I can break rules, too. Goodbye.")
PROTOCOL_ERROR = Reply(521, "5.5.1", "Protocol error")

# --- HELO / EHLO --------------------------------------------------------------------


def helo(hostname: str) -> Reply:
    return Reply(250, None, hostname)


def ehlo(hostname: str, keywords: list[str] | tuple[str, ...]) -> Reply:
    """``250-HOSTNAME`` then one line per keyword (``PIPELINING``, ``SIZE 10240000``, …)."""
    return Reply(250, None, (hostname, *keywords))


HELO_SYNTAX = Reply(501, None, "Syntax: HELO hostname")
EHLO_SYNTAX = Reply(501, None, "Syntax: EHLO hostname")
HELO_FIRST = Reply(503, "5.5.1", "Error: send HELO/EHLO first")

# --- generic ------------------------------------------------------------------------

OK = Reply(250, "2.0.0", "Ok")
UNRECOGNIZED = Reply(500, "5.5.2", "Error: command not recognized")  # Postfix 3.7: 500
BAD_SYNTAX = Reply(500, "5.5.2", "Error: bad syntax")
BAD_UTF8 = Reply(500, "5.5.2", "Error: bad UTF-8 syntax")
# A command line longer than line_length_limit (seen in Postfix transcripts).
LINE_TOO_LONG = Reply(500, "5.5.2", "Error: line too long")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Error: command not implemented")
RSET_SYNTAX = Reply(501, "5.5.4", "Syntax: RSET")
TRANSACTION_IN_PROGRESS = Reply(503, "5.5.1", "Error: MAIL transaction in progress")

# --- MAIL ---------------------------------------------------------------------------

MAIL_OK = Reply(250, "2.1.0", "Ok")
NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_SIZE_SYNTAX = Reply(501, "5.5.4", "Bad message size syntax")
SIZE_EXCEEDS_LIMIT = Reply(552, "5.3.4", "Message size exceeds fixed limit")
# Not enough queue file space for the announced SIZE (queue_minfree).
INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")


# RFC 3461 parameters (Postfix's smtpd(8) wording: a bad value, or one given twice).
BAD_RET_SYNTAX = Reply(501, "5.5.4", "Bad RET parameter syntax")
BAD_ENVID_SYNTAX = Reply(501, "5.5.4", "Bad ENVID parameter syntax")
BAD_NOTIFY_SYNTAX = Reply(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
BAD_ORCPT_SYNTAX = Reply(501, "5.5.4", "Error: Bad ORCPT parameter syntax")


def unsupported_option(option: str) -> Reply:
    """An unknown or malformed MAIL/RCPT parameter (``555 5.5.4 Unsupported option: X``)."""
    return Reply(555, "5.5.4", f"Unsupported option: {option}")


# --- RCPT ---------------------------------------------------------------------------

RCPT_OK = Reply(250, "2.1.5", "Ok")
NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")

# --- DATA ---------------------------------------------------------------------------

DATA_GO = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "Error: no valid recipients")
DATA_SYNTAX = Reply(501, "5.5.4", "Syntax: DATA")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Error: message file too big")
# hopcount_limit reached (Postfix's cleanup(8), CLEANUP_STAT_HOPS).
TOO_MANY_HOPS = Reply(554, "5.4.0", "Error: too many hops")
# smtpd_forbid_unauth_pipelining: input sent without waiting where SMTP requires it.
PROTOCOL_SYNCHRONIZATION = Reply(554, "5.5.0", "Error: SMTP protocol synchronization")
QUEUE_WRITE_ERROR = Reply(451, "4.3.0", "Error: queue file write error")
# virtual alias expansion looped or grew too large (cleanup(8), CLEANUP_STAT_DEFER).
ALIAS_EXPANSION_ERROR = Reply(451, "4.6.0", "Alias expansion error")


def queued(queue_id: str) -> Reply:
    return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")


# --- BDAT (RFC 3030), as Postfix 3.7's smtpd answers -------------------------------------
BDAT_SYNTAX = Reply(521, "5.5.4", "Syntax: BDAT count [LAST]")  # then disconnect
NULL_BDAT = Reply(551, "5.7.1", "Null BDAT request")  # BDAT 0 without LAST
CHUNK_TOO_BIG = Reply(552, "5.3.4", "Chunk exceeds message size limit")
MAIL_AFTER_BDAT = Reply(503, "5.5.1", "Error: MAIL after BDAT")
RCPT_AFTER_BDAT = Reply(503, "5.5.1", "Error: RCPT after BDAT")
DATA_AFTER_BDAT = Reply(503, "5.5.1", "Error: DATA after BDAT")
# BODY=BINARYMIME (RFC 3030 3): the content may only come by BDAT. Postfix does not
# offer BINARYMIME; the text is ours (docs/decisions.md).
DATA_WITH_BINARYMIME = Reply(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT")


def bdat_discarded(size: int) -> Reply:
    """A chunk read and dropped because an earlier one of the same message failed."""
    return Reply(551, "5.0.0", f"Discarded {size} bytes after earlier error")


def bdat_ok(size: int) -> Reply:
    """A chunk (not LAST) accepted; ``size`` its octets."""
    return Reply(250, "2.0.0", f"Ok: {size} bytes")


def bdat_queued(size: int, queue_id: str) -> Reply:
    """BDAT LAST accepted: ``size`` counts the message's octets as CRLF lines."""
    return Reply(250, "2.0.0", f"Ok: {size} bytes queued as {queue_id}")


# --- SMTPUTF8 (RFC 6531) -------------------------------------------------------------------
SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")


# --- VRFY ---------------------------------------------------------------------------

VRFY_DISABLED = Reply(502, "5.5.1", "VRFY command is disabled")
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY address")


def vrfy_ok(address: str) -> Reply:
    return Reply(252, "2.0.0", address)


# --- STARTTLS / AUTH ----------------------------------------------------------------

STARTTLS_GO = Reply(220, "2.0.0", "Ready to start TLS")
STARTTLS_SYNTAX = Reply(501, "5.5.4", "Syntax: STARTTLS")
TLS_ALREADY_ACTIVE = Reply(554, "5.5.1", "Error: TLS already active")
# Postfix 3.7 when TLS is not offered: STARTTLS as not implemented (checked side by side).
STARTTLS_NOT_OFFERED = NOT_IMPLEMENTED
# TLS offered but no usable certificate or key (Postfix 3.7, side by side).
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available due to local problem")


def ccert_required(hostname: str, why: str) -> Reply:
    """smtpd_tls_req_ccert after the handshake (Postfix 3.7, side by side): ``421 4.7.1
    HOST Error: No client certificate presented`` (or ``Client certificate not trusted``)."""
    return Reply(421, "4.7.1", f"{hostname} Error: {why}")


# smtpd_tls_security_level = encrypt, before STARTTLS (RFC 3207 4; Postfix's text).
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Error: authentication not enabled")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Error: already authenticated")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
# The client core recognises it; smtpd sends auth_failed(reason).
AUTH_FAILED = Reply(535, "5.7.8", "Error: authentication failed")
AUTH_ABORTED = Reply(501, "5.7.0", "Authentication aborted")


def auth_challenge(challenge_b64: str) -> Reply:
    """``334 BASE64`` (RFC 4954); an empty challenge is sent as ``334 `` (a space)."""
    return Reply(334, None, challenge_b64)


# Postfix's own SASL failure reasons (xsasl_dovecot_server.c), and its stand-in when the
# authentication server gave none.
SASL_NO_REASON = "(reason unavailable)"
SASL_INVALID_MECHANISM = "Invalid authentication mechanism"
SASL_BAD_INITIAL_BASE64 = "Invalid base64 data in initial response"
SASL_BAD_CONTINUED_BASE64 = "Invalid base64 data in continued response"


def auth_failed(reason: str) -> Reply:
    """RFC 4954 6: ``535 5.7.8 Error: authentication failed: REASON`` (Postfix 3.7)."""
    return Reply(535, "5.7.8", f"Error: authentication failed: {reason or SASL_NO_REASON}")


def auth_temporary_failure(reason: str) -> Reply:
    """RFC 4954 6: ``454 4.7.0 Temporary authentication failure: REASON`` (Postfix 3.7:
    the authentication server unreachable, timed out, or said temp_fail)."""
    return Reply(454, "4.7.0", f"Temporary authentication failure: {reason or SASL_NO_REASON}")


# smtpd_tls_security_level = encrypt (smtpd_enforce_tls) before STARTTLS: MAIL, AUTH, …
MUST_STARTTLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
# A continuation longer than smtpd_sasl_response_limit. unsure: not sent yet (the line
# buffer answers LINE_TOO_LONG first).
SASL_RESPONSE_LIMIT = Reply(500, "5.5.6", "SASL response limit exceeded")


def auth_keywords(mechanisms: list[str] | tuple[str, ...], *, broken_clients: bool) -> list[str]:
    """The EHLO lines announcing AUTH (``AUTH PLAIN LOGIN``; ``AUTH=PLAIN LOGIN`` too for
    broken_sasl_auth_clients); none without mechanisms."""
    if not mechanisms:
        return []
    names = " ".join(mechanisms)
    return [f"AUTH {names}", *([f"AUTH={names}"] if broken_clients else [])]


# --- restriction results (smtpd_check) ----------------------------------------------


class ReplyClass(enum.Enum):
    """What a restriction reply is about (smtpd_check's reply classes), as the text says it."""

    CLIENT = "Client host"
    HELO = "Helo command"
    SENDER = "Sender address"
    RECIPIENT = "Recipient address"
    DATA = "Data command"
    END_OF_DATA = "End-of-data"
    ETRN = "Etrn command"
    CCERT = "Client certificate"  # check_ccert_access (subject: the certificate's CN)


def rejected(code: int, enhanced: str, what: ReplyClass, subject: str, reason: str) -> Reply:
    """``<subject>: Client host|Helo command|Sender address|Recipient address rejected: reason``."""
    return Reply(code, enhanced, f"<{subject}>: {what.value} rejected: {reason}")


def access_denied(code: int, what: ReplyClass, subject: str) -> Reply:
    """``reject`` and an access(5) ``REJECT`` without text (reject_code, access_map_reject_code)."""
    return rejected(code, _dsn(code, "7.1"), what, subject, "Access denied")


def try_again_later(code: int, what: ReplyClass, subject: str) -> Reply:
    """``defer`` (defer_code 450). unsure: the wording."""
    return rejected(code, _dsn(code, "3.2"), what, subject, "Try again later")


def defer_requested(code: int, what: ReplyClass, subject: str, restriction: str) -> Reply:
    """``defer_if_permit``/``defer_if_reject``: ``… rejected: defer_if_permit requested``."""
    return rejected(code, _dsn(code, "7.1"), what, subject, f"{restriction} requested")


def access_text(code: int, what: ReplyClass, subject: str, text: str) -> Reply:
    """An access(5) action with a text (``REJECT go away``, ``450 4.7.0 later``).

    The text may open with its own enhanced code of the same class (``5.7.0 go away``);
    else the enhanced code is ``X.7.1``.
    """
    enhanced = _dsn(code, "7.1")
    first, _, rest = text.partition(" ")
    parts = first.split(".")
    if (len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] == str(code)[0]
            and rest.strip()):
        enhanced, text = first, rest.strip()
    return rejected(code, enhanced, what, subject, text)


def template_reply(text: str, default_code: int, detail: str = "7.1") -> Reply:
    """A reply an administrator wrote (``rbl_reply_maps``, ``default_rbl_reply`` expanded,
    a policy service's ``NNN text``): ``NNN [X.Y.Z] text``; without a code,
    ``default_code``; without an enhanced code, ``X.detail``."""
    code = default_code
    first, _, rest = text.strip().partition(" ")
    if len(first) == 3 and first.isdigit() and first[0] in "45":
        code, text = int(first), rest.strip()
    enhanced = _dsn(code, detail)
    first, _, rest = text.partition(" ")
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] == str(code)[0]:
        enhanced, text = first, rest.strip()
    return Reply(code, enhanced, text)


def multi_recipient_bounce(code: int, what: ReplyClass, subject: str) -> Reply:
    """reject_multi_recipient_bounce (multi_recipient_bounce_reject_code 550)."""
    return rejected(code, _dsn(code, "5.3"), what, subject, "Multi-recipient bounce")


def plaintext_session(code: int) -> Reply:
    """reject_plaintext_session (plaintext_reject_code 450)."""
    return Reply(code, _dsn(code, "7.1"), "Session encryption is required")


def relay_denied(address: str, code: int) -> Reply:
    """reject_unauth_destination (relay_domains_reject_code 554; 454 for defer_*)."""
    return Reply(code, _dsn(code, "7.1"), f"<{address}>: Relay access denied")


def user_unknown(
    address: str, code: int, what: ReplyClass = ReplyClass.RECIPIENT, table: str = "local"
) -> Reply:
    """reject_unlisted_recipient/_sender (unknown_local_recipient_reject_code 550):
    ``<addr>: Recipient address rejected: User unknown in local recipient table``
    (enhanced X.1.1; X.1.0 for a sender); ``table="relay"`` for relay_recipient_maps
    (unknown_relay_recipient_reject_code): ``… User unknown in relay recipient table``."""
    detail = "1.0" if what is ReplyClass.SENDER else "1.1"
    return rejected(code, _dsn(code, detail), what, address,
                    f"User unknown in {table} recipient table")


def user_unknown_virtual_alias(
    address: str, code: int, what: ReplyClass = ReplyClass.RECIPIENT
) -> Reply:
    """reject_unlisted_recipient/_sender in a virtual alias domain
    (unknown_virtual_alias_reject_code 550): ``<addr>: Recipient address rejected: User
    unknown in virtual alias table`` (X.1.1; X.1.7 for a sender, as Postfix 3.7)."""
    detail = "1.7" if what is ReplyClass.SENDER else "1.1"
    return rejected(code, _dsn(code, detail), what, address,
                    "User unknown in virtual alias table")


def error_transport(address: str, transport: str, nexthop: str,
                    what: ReplyClass = ReplyClass.RECIPIENT) -> Reply:
    """reject_unlisted_recipient/_sender for an address that resolves to the ``error``
    (550) or ``retry`` (450) transport, as Postfix's check_rcpt_maps: the transport's
    next hop is the reason, ``<addr>: Recipient address rejected: no mail here``; a
    leading enhanced code in the next hop (``5.7.1 go away``) is used, its class made
    that of the reply code; else X.1.1 (X.1.0 for a sender)."""
    code = 450 if transport == "retry" else 550
    detail = "1.0" if what is ReplyClass.SENDER else "1.1"
    head, _, rest = nexthop.partition(" ")
    parts = head.split(".")
    if (len(parts) == 3 and parts[0] in ("2", "4", "5") and all(p.isdigit() for p in parts)
            and len(parts[1]) <= 3 and len(parts[2]) <= 3):
        detail, nexthop = f"{parts[1]}.{parts[2]}", rest.strip()
    return rejected(code, _dsn(code, detail), what, address, nexthop)


def temporary_lookup_failure(address: str) -> Reply:
    """A local recipient table could not be read. unsure: the wording."""
    return Reply(451, "4.3.0", f"<{address}>: Temporary lookup failure")


def unknown_domain(address: str, code: int, what: ReplyClass) -> Reply:
    """reject_unknown_sender_domain (X.1.8) / reject_unknown_recipient_domain (X.1.2):
    unknown_address_reject_code 450, or defer_code after a temporary DNS failure."""
    detail = "1.8" if what is ReplyClass.SENDER else "1.2"
    return rejected(code, _dsn(code, detail), what, address, "Domain not found")


def non_fqdn_address(address: str, code: int, what: ReplyClass) -> Reply:
    """reject_non_fqdn_sender/_recipient (non_fqdn_reject_code 504)."""
    return rejected(code, _dsn(code, "5.2"), what, address, "need fully-qualified address")


def non_fqdn_helo(helo_name: str, code: int) -> Reply:
    """reject_non_fqdn_helo_hostname (non_fqdn_reject_code 504)."""
    return rejected(code, _dsn(code, "5.2"), ReplyClass.HELO, helo_name,
                    "need fully-qualified hostname")


def invalid_helo(helo_name: str, code: int) -> Reply:
    """reject_invalid_helo_hostname (invalid_hostname_reject_code 501)."""
    return rejected(code, _dsn(code, "5.2"), ReplyClass.HELO, helo_name, "Invalid name")


def invalid_helo_address(helo_name: str, code: int) -> Reply:
    """reject_invalid_helo_hostname / reject_non_fqdn_helo_hostname on a bad address
    literal (``[300.1.1.1]``; invalid_hostname_reject_code 501)."""
    return rejected(code, _dsn(code, "5.2"), ReplyClass.HELO, helo_name, "invalid ip address")


def unknown_helo_hostname(helo_name: str, code: int) -> Reply:
    """reject_unknown_helo_hostname (unknown_hostname_reject_code 450; defer_code on tempfail)."""
    return rejected(code, _dsn(code, "7.1"), ReplyClass.HELO, helo_name, "Host not found")


def unknown_client(address: str, code: int, *, reverse: bool = False) -> Reply:
    """reject_unknown_client_hostname / reject_unknown_reverse_client_hostname
    (unknown_client_reject_code 450): ``Client host rejected: cannot find your hostname,
    [addr]`` (``reverse hostname``), without the usual ``<subject>:`` prefix."""
    what = "reverse hostname" if reverse else "hostname"
    return Reply(code, _dsn(code, "7.25"),
                 f"Client host rejected: cannot find your {what}, [{address}]")


def unauth_pipelining(what: ReplyClass, subject: str, code: int = 503) -> Reply:
    """reject_unauth_pipelining: e.g. ``503 5.5.0 <unknown[1.2.3.4]>: Client host rejected: …``.

    ``what`` is the list that fired it; ``subject`` what Postfix puts in the angle brackets.
    """
    return rejected(code, _dsn(code, "5.0"), what, subject,
                    "Improper use of SMTP command pipelining")


def sender_not_owned(sender: str, login: str) -> Reply:
    """reject_*sender_login_mismatch, authenticated client: the login does not own the sender."""
    return rejected(553, "5.7.1", ReplyClass.SENDER, sender, f"not owned by user {login}")


def sender_not_logged_in(sender: str) -> Reply:
    """reject_*sender_login_mismatch, unauthenticated client using an owned sender."""
    return rejected(553, "5.7.1", ReplyClass.SENDER, sender, "not logged in")


# An access(5) table answer Postfix cannot interpret: a configuration error, not the client's.
SERVER_CONFIGURATION_ERROR = Reply(451, "4.3.5", "Server configuration error")


# --- ETRN (RFC 1985), as Postfix 3.7's smtpd: no enhanced status codes ----------------

ETRN_SYNTAX = Reply(500, None, "Syntax: ETRN domain")
ETRN_HELO_FIRST = Reply(503, None, "Error: send HELO/EHLO first")
ETRN_IN_TRANSACTION = Reply(503, None, "Error: MAIL transaction in progress")
ETRN_BAD_PARAMETER = Reply(501, None, "Error: invalid parameter syntax")
ETRN_OK = Reply(250, None, "Queuing started")
# The flush service cannot be asked (Postfix: "unable to talk to fast flush service").
ETRN_UNABLE = Reply(458, None, "Unable to queue messages")


def etrn_unavailable(site: str) -> Reply:
    """``459 <SITE>: service unavailable``: SITE is not in fast_flush_domains."""
    return Reply(459, None, f"<{site}>: service unavailable")


# --- XCLIENT and XFORWARD (Postfix's XCLIENT_README, XFORWARD_README) ----------------

XCLIENT_SYNTAX = Reply(501, "5.5.4", "Syntax: XCLIENT attribute=value...")
XFORWARD_SYNTAX = Reply(501, "5.5.4", "Syntax: XFORWARD attribute=value...")
INSUFFICIENT_AUTHORIZATION = Reply(550, "5.7.0", "Error: insufficient authorization")
ATTRIBUTE_VALUE_EXPECTED = Reply(501, "5.5.4", "Error: attribute=value expected")


def bad_attribute_name(command: str, name: str) -> Reply:
    """``501 5.5.4 Bad XCLIENT attribute name: FOO`` (``command``: XCLIENT or XFORWARD)."""
    return Reply(501, "5.5.4", f"Bad {command} attribute name: {name}")


def bad_attribute_value(name: str, value: str) -> Reply:
    """``501 5.5.4 Bad ADDR syntax: VALUE`` (the value as sent)."""
    return Reply(501, "5.5.4", f"Bad {name} syntax: {value}")


# --- smtpd_delay_reject = no ----------------------------------------------------------


def client_access_denied(client: str) -> Reply:
    """Every command but QUIT after the client restrictions refused the connection:
    ``503 5.7.0 Error: access denied for NAME[ADDR]``."""
    return Reply(503, "5.7.0", f"Error: access denied for {client}")
