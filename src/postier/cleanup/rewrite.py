"""Address rewriting as a message enters the queue: canonical maps on the envelope and
the headers, virtual alias expansion of the recipients.

Follows cleanup(8) ("ADDRESS REWRITING"), canonical(5), virtual(5),
ADDRESS_REWRITING_README and postconf(5) ``canonical_maps``, ``sender_canonical_maps``,
``recipient_canonical_maps``, the ``*canonical_classes``, ``virtual_alias_maps``,
``virtual_alias_recursion_limit``, ``virtual_alias_expansion_limit``,
``propagate_unmatched_extensions``, ``local_header_rewrite_clients``. The pure cores
are ``rewrite.canonical`` and ``rewrite.virtual``; this module gives them the tables
(searched in mail_addr_find(3) order, ``tables.search.mail_addr_find``) and applies
them:

- the envelope (``AddressRewriting.envelope``): the sender through the sender canonical
  maps; each recipient through the recipient canonical maps, then virtual alias
  expansion into one or more recipients. Each result keeps the recipient as the client
  sent it as its original recipient (``orig_to=``), and, when it was rewritten and the
  client gave no ORCPT, ``rfc822;ORIGINAL`` as its DSN original recipient, as Postfix
  3.7 writes ``dsn_orig_rcpt``. Duplicates (same address, original and DSN fields)
  are written once.
- the headers (``AddressRewriting.header``), only for clients that
  ``local_header_rewrite_clients`` lets rewrite headers (Postfix rewrites no header of a
  remote client while ``remote_header_rewrite_domain`` is empty): each address of a
  sender header (From:, Sender:, Reply-To:, …) is completed (``user`` ->
  ``user@$myorigin``) and goes through the sender canonical maps, of a recipient header
  (To:, Cc:, …) through the recipient canonical maps. Virtual alias
  maps never touch headers. Only the address changes; display names, comments and the
  rest of the header stay as written (Postfix also refolds a rewritten header; postier
  does not).

Errors: ``ExpansionError`` (a loop, too large an expansion: answered ``451 4.6.0 Alias
expansion error``) and ``tables.TableError`` (a table failed: ``451 4.3.0``) refuse the
message for now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postier.config.errors import ConfigError
from postier.config.params import (
    CANONICAL_CLASSES,
    CANONICAL_MAPS,
    MYDESTINATION,
    MYORIGIN,
    PROPAGATE_UNMATCHED_EXTENSIONS,
    RECIPIENT_CANONICAL_CLASSES,
    RECIPIENT_CANONICAL_MAPS,
    RECIPIENT_DELIMITER,
    SENDER_CANONICAL_CLASSES,
    SENDER_CANONICAL_MAPS,
    VIRTUAL_ALIAS_DOMAINS,
    VIRTUAL_ALIAS_EXPANSION_LIMIT,
    VIRTUAL_ALIAS_MAPS,
    VIRTUAL_ALIAS_RECURSION_LIMIT,
    Param,
)
from postier.config.settings import Config
from postier.queue.file import Envelope, Recipient
from postier.rewrite.address import fold_domain, parse_address, unquoted_chars
from postier.rewrite.addrmap import Finder, Found
from postier.rewrite.canonical import (
    Canonical,
    CanonicalClass,
    CanonicalMap,
    Warn,
    parse_classes,
)
from postier.rewrite.virtual import VirtualAlias
from postier.tables import Maps, SearchSettings, TableError, TableOpenError, Tables
from postier.tables.search import mail_addr_find

#: Headers whose addresses are senders / recipients (Postfix's header_opts(3)).
SENDER_HEADERS = frozenset({
    "from", "sender", "reply-to", "errors-to", "return-receipt-to", "return-path",
    "resent-from", "resent-sender", "resent-reply-to",
})
RECIPIENT_HEADERS = frozenset({
    "to", "cc", "bcc", "apparently-to", "resent-to", "resent-cc", "resent-bcc",
})


def address_spans(value: str) -> list[tuple[int, int]]:
    """Where the addresses of an RFC 5322 address list are in ``value`` (start, end):
    the text inside ``<…>``, else a mailbox's bare addr-spec; display names, quoted
    strings, comments and ``group:`` / ``;`` are skipped."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(value)
    start = -1  # start of the bare word being read
    angle = -1
    word_spans: list[tuple[int, int]] = []
    seen_angle = False

    def end_mailbox() -> None:
        nonlocal word_spans, seen_angle
        if not seen_angle and word_spans:
            spans.append((word_spans[0][0], word_spans[-1][1]))
        word_spans = []
        seen_angle = False

    while i < n:
        c = value[i]
        if c == "(":  # comment, possibly nested
            if start >= 0:
                word_spans.append((start, i))
                start = -1
            depth = 0
            while i < n:
                if value[i] == "\\":
                    i += 1
                elif value[i] == "(":
                    depth += 1
                elif value[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
        elif c == '"':
            if start < 0:
                start = i
            i += 1
            while i < n and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
        elif c == "<":
            start = -1
            angle = i + 1
        elif c == ">" and angle >= 0:
            if value[angle:i].strip():
                spans.append((angle, i))
            angle = -1
            seen_angle = True
            word_spans = []
        elif angle >= 0:
            pass
        elif c in ",;:":
            if start >= 0:
                word_spans.append((start, i))
                start = -1
            if c == ":":  # "group:" — what came before is the group's name
                word_spans = []
            else:
                end_mailbox()
        elif c.isspace():
            if start >= 0:
                word_spans.append((start, i))
                start = -1
        elif start < 0:
            start = i
        i += 1
    if start >= 0:
        word_spans.append((start, n))
    end_mailbox()
    # a bare mailbox is one addr-spec: several words there are a display name without <>
    return [s for s in spans if not _unquoted_space(value[s[0]:s[1]].strip())]


def _unquoted_space(text: str) -> bool:
    """Has ``text`` a blank outside double quotes?"""
    return any(c.isspace() for _, c in unquoted_chars(text))


def unique_recipients(recipients: Sequence[Recipient]) -> list[Recipient]:
    """``recipients`` in order without duplicates, as cleanup(8) eliminates them: a
    recipient is a duplicate of an earlier one only when its address, its original
    recipient (``orig``, or the address when empty), its DSN NOTIFY and its ORCPT are
    all equal, letter case aside (Postfix 3.7: the same RCPT twice is one recipient;
    the same address with another NOTIFY, or reached from another original recipient,
    is another one, delivered and logged with its own ``orig_to``)."""
    seen: set[tuple[str, str, str, str]] = set()
    out: list[Recipient] = []
    for r in recipients:
        key = (r.address.lower(), (r.orig or r.address).lower(), r.dsn_notify.upper(),
               r.dsn_orcpt.lower())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


@dataclass(frozen=True)
class AddressRewriting:
    """One configuration's address rewriting for cleanup: ``canonical`` (may be empty)
    and ``virtual`` (None: no ``virtual_alias_maps``); ``qualify`` completes an address
    (``user`` -> ``user@$myorigin``) before it is looked up; ``recipient_maps``: the
    maps in which a listed recipient is valid for smtpd (``listed``)."""

    canonical: Canonical
    virtual: VirtualAlias | None
    qualify: Callable[[str], str]
    recipient_finders: tuple[Finder, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.canonical) or self.virtual is not None

    def envelope(self, envelope: Envelope, warn: Warn) -> Envelope:
        """``envelope`` rewritten (see the module docstring). Raises ExpansionError,
        TableError."""
        sender = self.canonical.envelope_sender(envelope.sender, warn)
        out: list[Recipient] = []
        for r in envelope.recipients:
            orig = r.orig or r.address
            address = self.canonical.envelope_recipient(r.address, warn)
            finals = self.virtual.expand(address) if self.virtual is not None else [address]
            for final in finals:
                rewritten = final.lower() != r.address.lower()
                orcpt = r.dsn_orcpt or (f"rfc822;{orig}" if rewritten else "")
                out.append(dataclasses.replace(r, address=final, orig=orig, dsn_orcpt=orcpt))
        return dataclasses.replace(envelope, sender=sender, recipients=unique_recipients(out))

    def header(self, name: str, header: bytes, warn: Warn) -> bytes:
        """One logical header (``name`` lower case, the whole ``Name: value`` with its
        line ends) with its addresses completed (``user`` -> ``user@$myorigin``, as
        Postfix's cleanup does in the "local" rewriting context) and through the
        canonical maps of its class; other headers unchanged. Raises TableError."""
        if name in SENDER_HEADERS:
            rewrite = self.canonical.header_sender
        elif name in RECIPIENT_HEADERS:
            rewrite = self.canonical.header_recipient
        else:
            return header
        text = header.decode("utf-8", "surrogateescape")
        colon = text.find(":")
        value = text[colon + 1:]
        changed = False
        for start, end in reversed(address_spans(value)):
            written = value[start:end]
            parsed = parse_address(written)
            if parsed.is_null:
                continue
            qualified = self.qualify(parsed.external())
            result = rewrite(qualified, warn)
            if result.lower() == qualified.lower() and parsed.domain is not None:
                continue  # neither completed nor mapped: left as written
            value = value[:start] + result + value[end:]
            changed = True
        if not changed:
            return header
        return (text[:colon + 1] + value).encode("utf-8", "surrogateescape")

    def listed(self, address: str) -> bool | None:
        """Is ``address`` a key of ``recipient_canonical_maps``, ``canonical_maps`` or
        ``virtual_alias_maps`` (Postfix's smtpd check_rcpt_maps: such a recipient is
        known)? None when a table failed."""
        try:
            return any(find(address) is not None for find in self.recipient_finders)
        except TableError:
            return None


def _finder(maps: Maps, settings: SearchSettings,
            local_domain: Callable[[str], bool]) -> Finder:
    def find(address: str) -> Found | None:
        domain = parse_address(address).domain
        local = domain is None or local_domain(domain)
        return mail_addr_find(maps, address, settings, local=local)
    return find


def _classes(cfg: Config, param: Param[list[str]]) -> frozenset[CanonicalClass]:
    try:
        return parse_classes(cfg[param], param.name)
    except ValueError as exc:
        file, line = cfg.location(param.name)
        raise ConfigError(str(exc), file=file, line=line, param=param.name) from None


def rewriting_from_config(cfg: Config, tables: Tables,
                          qualify: Callable[[str], str]) -> AddressRewriting:
    """The rewriting ``cfg`` asks for, its tables opened through ``tables``. Raises
    ``ConfigError`` (a table that cannot be opened, an unknown class name). The local
    part alone is looked up (``user``) when the domain is ``$myorigin`` or in
    ``$mydestination``, as canonical(5) and virtual(5) say."""
    locals_ = {fold_domain(d) for d in (cfg[MYORIGIN], *cfg[MYDESTINATION])
               if d and ":" not in d and not d.startswith("/")}
    settings = SearchSettings(recipient_delimiter=cfg[RECIPIENT_DELIMITER])
    propagate = {w.lower() for w in cfg[PROPAGATE_UNMATCHED_EXTENSIONS]}

    def local_domain(domain: str) -> bool:
        return fold_domain(domain) in locals_

    def cmap(maps_param: Param[list[str]], classes_param: Param[list[str]]
             ) -> CanonicalMap | None:
        maps = tables.for_param(cfg, maps_param)
        if not maps:
            return None
        return CanonicalMap(maps_param.name, _finder(maps, settings, local_domain),
                            _classes(cfg, classes_param))

    sender = cmap(SENDER_CANONICAL_MAPS, SENDER_CANONICAL_CLASSES)
    recipient = cmap(RECIPIENT_CANONICAL_MAPS, RECIPIENT_CANONICAL_CLASSES)
    common = cmap(CANONICAL_MAPS, CANONICAL_CLASSES)
    canonical = Canonical(sender, recipient, common, propagate="canonical" in propagate,
                          qualify=qualify)
    virtual_maps = tables.for_param(cfg, VIRTUAL_ALIAS_MAPS)
    virtual = None
    if virtual_maps:
        virtual = VirtualAlias(
            _finder(virtual_maps, settings, local_domain),
            recursion_limit=cfg[VIRTUAL_ALIAS_RECURSION_LIMIT],
            expansion_limit=cfg[VIRTUAL_ALIAS_EXPANSION_LIMIT],
            propagate="virtual" in propagate, qualify=qualify)
    finders = tuple(m.find for m in (recipient, common) if m is not None)
    if virtual is not None:
        finders += (virtual.find,)
    return AddressRewriting(canonical, virtual, qualify, finders)


def virtual_alias_domain_tables(cfg: Config, tables: Tables, warn: Warn
                                ) -> Callable[[str], bool]:
    """The ``type:table`` entries of ``virtual_alias_domains`` (by default those of
    ``virtual_alias_maps``) as one question: is ``domain`` a key of one of them (a
    virtual alias domain, virtual(5) "virtual alias domain" lines)? A table that fails
    is logged through ``warn`` and counts as not listing the domain."""
    specs: Sequence[str] = [e for e in cfg[VIRTUAL_ALIAS_DOMAINS]
                            if ":" in e and not e.startswith("[")]
    try:
        maps = tables.maps(VIRTUAL_ALIAS_DOMAINS.name, specs) if specs else None
    except TableOpenError as exc:
        file, line = cfg.location(VIRTUAL_ALIAS_DOMAINS.name)
        raise ConfigError(str(exc), file=file, line=line) from None

    def listed(domain: str) -> bool:
        if maps is None:
            return False
        try:
            return maps.lookup(fold_domain(domain)) is not None
        except TableError as exc:
            warn(f"virtual_alias_domains: lookup of {domain}: {exc}")
            return False
    return listed
