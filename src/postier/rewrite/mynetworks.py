"""Which clients are in ``mynetworks``: the list or the mynetworks_style default, as a matcher.

Follows postconf(5) ``mynetworks`` and ``mynetworks_style``: entries ``net/mask``,
``[ipv6]/mask``, a bare address (a /32 or /128), ``!`` negation, first match wins;
an empty list means "computed from mynetworks_style": ``host`` (this machine's
addresses), ``subnet`` (the subnets of this machine's interfaces), ``class`` (their
whole class A/B/C network; IPv6 as subnet). The interface addresses are passed in
by the caller (``1.2.3.4`` or ``1.2.3.4/24``). A ``/file/name`` entry stands for the
patterns in that file (whitespace- or comma-separated, ``#`` comment lines), read
through the caller's ``read_file``; a ``type:table`` entry matches a client whose
address is a key of the table (``open_table`` gives the ``tables.Table``; cidr tables
are the usual choice). As Postfix, a bad entry is reported (``MyNetworks.errors``)
and a client that reaches it in the walk gets no answer (``lookup`` -> None: smtpd
tempfails with 451 4.3.0), never a silent yes or no; ``parse(strict=True)`` raises
ValueError at the first bad entry instead (configuration checks).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from postier.tables.base import Table, TableError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

STYLES = ("host", "subnet", "class")


def parse_network(entry: str, param: str = "mynetworks") -> Network:
    """One mynetworks-style pattern (without ``!``) as a network; ValueError when
    malformed, its text ``PARAM: reason`` naming ``param`` (the list the pattern is
    in: ``mynetworks``, ``smtpd_authorized_xclient_hosts``, …) and the word.

    Like Postfix, a pattern with host bits set below the mask (``10.0.0.1/8``)
    is an error, not silently widened. Postfix 3.7's texts (side by side):
    ``bad mask length in "10.0.0.0/33"``, ``bad mask value in
    "127.0.0.0/255.255.255.0"``, ``bad network value in "999.1.1.1/24"``,
    ``non-null host address bits in "1.2.3.4/8", perhaps you should use "1.0.0.0/8"
    instead``.
    """
    text = entry.strip()
    word = text
    if not text:
        raise ValueError(f"{param}: empty network pattern")
    if text.startswith("/"):
        raise ValueError(f"{param}: /file/name patterns need a file reader here: {text}")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{param}: missing ']' in {text}")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith("/"):
            raise ValueError(f"{param}: bad network pattern: {text}")
        text = host + rest
    addr_text, slash, mask_text = text.partition("/")
    try:
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        if _looks_like_table(text):
            raise ValueError(f"{param}: table lookups need a table opener here: {text}"
                             ) from None
        if slash and mask_text.isdigit():  # as Postfix: the mask is checked first
            if int(mask_text) > (128 if ":" in addr_text else 32):
                raise ValueError(f'{param}: bad mask length in "{word}"') from None
            raise ValueError(f'{param}: bad network value in "{word}"') from None
        raise ValueError(f"{param}: bad network pattern: {word}") from None
    if not slash:
        return ipaddress.ip_network(addr)
    if not mask_text.isdigit():
        if mask_text and all(c.isdigit() or c == "." for c in mask_text):
            raise ValueError(f'{param}: bad mask value in "{word}"')
        raise ValueError(f"{param}: bad network pattern: {word}")
    if int(mask_text) > addr.max_prefixlen:
        raise ValueError(f'{param}: bad mask length in "{word}"')
    try:
        return ipaddress.ip_network(f"{addr}/{mask_text}", strict=True)
    except ValueError:
        net = ipaddress.ip_network(f"{addr}/{mask_text}", strict=False)
        raise ValueError(
            f'{param}: non-null host address bits in "{word}", '
            f'perhaps you should use "{_bracket(net)}" instead'
        ) from None


_NETWORK_WORD = re.compile(r"\[?[0-9A-Fa-f:.]+\]?/[0-9.]+")


def looks_like_network(word: str) -> bool:
    """Is a host-list word (``!``s dropped) meant as ``net/mask`` (``10.0.0.0/8``,
    ``[2001:db8::]/32``, also a bad one such as ``999.1.1.1/33``), where a list that
    also takes host names (``smtpd_client_event_limit_exceptions``) must read it as a
    network, as Postfix's lists do, and not as a host name?"""
    return _NETWORK_WORD.fullmatch(word) is not None


def _looks_like_table(text: str) -> bool:
    """``hash:/etc/postfix/network_table`` and friends (checked once it is no IP address)."""
    kind, colon, _ = text.partition(":")
    return bool(colon) and kind.replace("_", "").isalnum() and kind[:1].isalpha()


def _bracket(net: Network) -> str:
    return f"[{net.network_address}]/{net.prefixlen}" if net.version == 6 else str(net)


def normalize_ip(ip: str) -> Address | None:
    """A client address as an ``ipaddress`` object; IPv4-mapped IPv6 becomes IPv4.

    Accepts ``[1.2.3.4]``, ``[IPv6:…]`` and a ``%zone`` suffix; None when not an address.
    """
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    text = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def style_networks(style: str, interface_addrs: Sequence[str]) -> list[Network]:
    """The networks ``mynetworks_style`` gives for these interface addresses.

    ``host``: each address alone; ``subnet``: each address's network as given by
    its ``/prefix`` (an address without one counts as a host); ``class``: the IPv4
    class A, B or C network containing the address (IPv6 addresses as ``subnet``).
    """
    kind = style.strip().lower()
    if kind not in STYLES:
        raise ValueError(f"unknown mynetworks_style value: {style}")
    out: list[Network] = []
    for text in interface_addrs:
        iface = ipaddress.ip_interface(text.strip().strip("[]").split("%", 1)[0])
        if kind == "host":
            net: Network = ipaddress.ip_network(iface.ip)
        elif kind == "class" and iface.version == 4:
            first = int(str(iface.ip).split(".", 1)[0])
            prefix = 8 if first < 128 else 16 if first < 192 else 24
            net = ipaddress.ip_network(f"{iface.ip}/{prefix}", strict=False)
        else:
            net = iface.network
        if net not in out:
            out.append(net)
    return out


@dataclass(frozen=True)
class BadEntry:
    """A mynetworks entry that could not be used: ``text`` and why (``reason``)."""

    text: str
    reason: str


Pattern = Network | Table | BadEntry
ReadFile = Callable[[str], str]
OpenTable = Callable[[str], Table]


#: Bound of MyNetworks._answers (cleared when full: one entry per recent client).
_MAX_ANSWERS = 4096


def _words(text: str) -> list[str]:
    return text.replace(",", " ").split()


@dataclass(frozen=True)
class MyNetworks:
    """An ordered list of (negated, pattern); ``match`` is first-match-wins."""

    entries: tuple[tuple[bool, Pattern], ...]
    #: Answers of ``lookup`` by client text, kept only when no entry is a table (the
    #: answer then depends on the address alone); a session asks several times
    #: (permit_mynetworks, local_header_rewrite_clients) for the same client.
    _answers: dict[str, bool | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @property
    def errors(self) -> list[str]:
        """Why each bad entry is bad (empty when every entry is usable)."""
        return [p.reason for _, p in self.entries if isinstance(p, BadEntry)]

    @classmethod
    def parse(cls, items: Sequence[str], *, read_file: ReadFile | None = None,
              open_table: OpenTable | None = None, strict: bool = True,
              param: str = "mynetworks") -> MyNetworks:
        """Parse mynetworks-style entries (already split on commas/whitespace) of the
        parameter ``param`` (named in every error). ``read_file`` reads a
        ``/file/name`` (OSError when it cannot), ``open_table`` opens a ``type:table``
        (ValueError when it cannot). ``!`` negates, each one in turn (``!!`` is no
        negation, as Postfix's lists). ``strict``: a bad entry raises ValueError; else
        it is kept as a ``BadEntry``. An error quotes the word as written."""
        entries: list[tuple[bool, Pattern]] = []

        def add(word: str, depth: int) -> None:
            text = word.lstrip("!")
            negated = (len(word) - len(text)) % 2 == 1
            try:
                if text.startswith("/") and read_file is not None:
                    if depth > 5:
                        raise ValueError(f"{param}: {text}: files nested too deeply")
                    try:
                        content = read_file(text)
                    except OSError as exc:
                        raise ValueError(f"{param}: open {text}: {exc.strerror}") from None
                    for line in content.splitlines():
                        if line.strip().startswith("#"):
                            continue
                        for inner in _words(line.split("#", 1)[0]):
                            add(("!" if negated else "") + inner, depth + 1)
                    return
                if (not text.startswith("[") and _looks_like_table(text)
                        and open_table is not None):
                    entries.append((negated, open_table(text)))
                    return
                entries.append((negated, parse_network(text, param)))
            except ValueError as exc:
                if word != text:  # the word as written, its "!"s included
                    message = str(exc).replace(f'"{text}"', f'"{word}"')
                    if message.endswith(f": {text}"):
                        message = message[: -len(text)] + word
                    exc = ValueError(message)
                if strict:
                    raise exc from None
                entries.append((negated, BadEntry(word, str(exc))))

        for item in items:
            for word in _words(item):
                add(word, 0)
        return cls(tuple(entries))

    @classmethod
    def from_style(cls, style: str, interface_addrs: Sequence[str]) -> MyNetworks:
        return cls(tuple((False, net) for net in style_networks(style, interface_addrs)))

    @classmethod
    def from_config(
        cls, items: Sequence[str], style: str, interface_addrs: Sequence[str], *,
        read_file: ReadFile | None = None, open_table: OpenTable | None = None,
        strict: bool = True,
    ) -> MyNetworks:
        """``mynetworks`` when set, else computed from ``mynetworks_style``."""
        if any(item.strip() for item in items):
            return cls.parse(items, read_file=read_file, open_table=open_table, strict=strict,
                             param="mynetworks")
        return cls.from_style(style, interface_addrs)

    def lookup(self, ip: str) -> bool | None:
        """Is ``ip`` in mynetworks? None when the walk reaches a bad entry or a table
        that fails before a match (the caller tempfails, as Postfix does)."""
        try:
            return self._answers[ip]
        except KeyError:
            pass
        answer = self._lookup(ip)
        if self._cacheable:
            if len(self._answers) >= _MAX_ANSWERS:
                self._answers.clear()
            self._answers[ip] = answer
        return answer

    @functools.cached_property
    def _cacheable(self) -> bool:
        return all(isinstance(p, BadEntry | ipaddress.IPv4Network | ipaddress.IPv6Network)
                   for _, p in self.entries)

    def _lookup(self, ip: str) -> bool | None:
        addr = normalize_ip(ip)
        if addr is None:
            return False
        # As Postfix: an IPv4-mapped client (::ffff:1.2.3.4) is the IPv4 client
        # 1.2.3.4 (normalize_ip), and an address matches only networks of its own
        # family, so an entry like Debian's [::ffff:127.0.0.0]/104 never admits an IPv4
        # client.
        for negated, pattern in self.entries:
            if isinstance(pattern, BadEntry):
                return None
            if isinstance(pattern, ipaddress.IPv4Network | ipaddress.IPv6Network):
                if addr.version == pattern.version and addr in pattern:
                    return not negated
                continue
            try:
                found = pattern.lookup(str(addr)) is not None
            except TableError:
                return None
            if found:
                return not negated
        return False

    def match(self, ip: str) -> bool:
        """``lookup`` as a plain yes or no: a failure counts as "not in mynetworks"."""
        return self.lookup(ip) is True
