"""The parameter registry: every main.cf parameter postier knows, declared once as a typed handle.

Follows Postfix's postconf(5): names, default values (as main.cf text, which may
refer to other parameters with ``$name``) and value types are Postfix's. Where the
Postfix default depends on the compatibility level, the Postfix >= 3.x
(``compatibility_level >= 2``) default is used, because it is the safer one. Where it
depends on the build or the host (``myhostname``, ``mydomain``), the default is
computed by ``postier.config.settings.Config`` and the text here is empty.

Each parameter is one module constant named after it in upper case
(``SMTPD_TIMEOUT``; a name that starts with a digit gets a ``PARAM_`` prefix, see
``constant_name``), of type ``Param[T]``; ``cfg[SMTPD_TIMEOUT]`` reads it as a ``T``
(``float`` seconds for time, ``int`` for integer and size, ``bool``, ``list[str]``,
``str``). ``PARAMS`` maps each name to its declaration, for postconf(1) and
validation.
"""

from __future__ import annotations

import builtins
import enum
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import postier
from postier.config.braces import split_list
from postier.config.postfix_names import POSTFIX_DEFAULTS

T_co = TypeVar("T_co", covariant=True)
_V = TypeVar("_V")

_TIME_RE = re.compile(r"(\d+)([smhdw]?)\Z", re.IGNORECASE)
_INT_RE = re.compile(r"[-+]?\d+\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ParamType(enum.Enum):
    """How a value is read: postconf(5) "boolean", "integer", "time", "size", list or string."""

    STR = "str"
    BOOL = "bool"
    INT = "int"
    TIME = "time"
    SIZE = "size"
    LIST = "list"


#: Parameters whose default is computed at run time (the text here is empty).
_COMPUTED = frozenset({"myhostname", "mydomain"})


class BadValue(ValueError):
    """A value text that does not parse as its type; ``str()`` is Postfix's diagnostic."""


def parse_bool(text: builtins.str) -> builtins.bool:
    """``yes`` -> True, ``no`` -> False (case-insensitive, surrounding space ignored).

    Raises BadValue otherwise.
    """
    value = text.strip().lower()
    if value == "yes":
        return True
    if value == "no":
        return False
    raise BadValue(f'bad boolean value: "{text}" (specify yes or no)')


def parse_int(text: builtins.str) -> builtins.int:
    """A decimal integer, optionally signed. Raises BadValue otherwise."""
    value = text.strip()
    if not _INT_RE.match(value):
        raise BadValue(f'bad numerical value: "{value}"')
    return builtins.int(value)


def parse_size(text: builtins.str) -> builtins.int:
    """A size in bytes: a non-negative decimal integer. Raises BadValue otherwise."""
    value = text.strip()
    if not value.isdigit():
        raise BadValue(f'bad size value: "{value}" (specify a number of bytes)')
    return builtins.int(value)


def parse_time(text: builtins.str, unit: builtins.str = "s") -> builtins.float:
    """A time in seconds: digits, then s, m, h, d or w (``unit`` when none). Raises BadValue."""
    value = text.strip()
    m = _TIME_RE.match(value)
    if m is None:
        raise BadValue(
            f'bad time value: "{value}" (specify a number with unit s, m, h, d or w)'
        )
    return builtins.float(builtins.int(m.group(1)) * _UNITS[(m.group(2) or unit).lower()])


def parse_str(text: builtins.str) -> builtins.str:
    """The value as it is (after ``$name`` expansion)."""
    return text


@dataclass(frozen=True, eq=False)
class Param(Generic[T_co]):
    """One main.cf parameter: name, default main.cf text, type and a one-line description.

    Declare one with ``Param.str``, ``Param.bool``, ``Param.int``, ``Param.size``,
    ``Param.time`` or ``Param.list``; ``cfg[param]`` returns ``convert(expanded value)``.
    ``time_unit`` is the unit of a time value written without a suffix. ``expand`` is
    False for parameters that Postfix expands at delivery time with its own attribute
    set (``mailbox_command``, ``forward_path``, ``luser_relay``): the configuration
    layer returns them unexpanded. ``implemented``: postier acts on the value;
    ``inert``: there is nothing for postier to do with it (Postfix's own paths, knobs
    whose safe value is postier's only behaviour). Setting a parameter that is neither
    draws the "not implemented" warning.
    """

    name: builtins.str
    default: builtins.str
    type: ParamType
    doc: builtins.str
    convert: Callable[[builtins.str], T_co] = field(repr=False)
    time_unit: builtins.str = "s"
    expand: builtins.bool = True
    implemented: builtins.bool = False
    inert: builtins.bool = False

    def __post_init__(self) -> None:
        if self.implemented and self.inert:
            raise ValueError(f"parameter {self.name}: both implemented and inert")

    def default_value(self) -> T_co:
        """The default as a ``T``, for a library's own default argument (one home for it).

        Raises ValueError when the default depends on other parameters or on the host
        (``$name``, or computed at run time): read ``cfg[param]`` then.
        """
        if (self.expand and "$" in self.default) or self.name in _COMPUTED:
            raise ValueError(f"parameter {self.name}: the default depends on the configuration")
        return self.convert(self.default)

    @staticmethod
    def str(name: builtins.str, default: builtins.str, doc: builtins.str, *,
            expand: builtins.bool = True, implemented: builtins.bool = False,
            inert: builtins.bool = False) -> Param[builtins.str]:
        """A string parameter (postconf(5) "string")."""
        return Param(name, default, ParamType.STR, doc, parse_str, expand=expand,
                     implemented=implemented, inert=inert)

    @staticmethod
    def bool(name: builtins.str, default: builtins.str, doc: builtins.str, *,
             implemented: builtins.bool = False,
             inert: builtins.bool = False) -> Param[builtins.bool]:
        """A yes/no parameter."""
        return Param(name, default, ParamType.BOOL, doc, parse_bool,
                     implemented=implemented, inert=inert)

    @staticmethod
    def int(name: builtins.str, default: builtins.str, doc: builtins.str, *,
            implemented: builtins.bool = False,
            inert: builtins.bool = False) -> Param[builtins.int]:
        """An integer parameter."""
        return Param(name, default, ParamType.INT, doc, parse_int,
                     implemented=implemented, inert=inert)

    @staticmethod
    def size(name: builtins.str, default: builtins.str, doc: builtins.str, *,
             implemented: builtins.bool = False,
             inert: builtins.bool = False) -> Param[builtins.int]:
        """A size in bytes (a non-negative integer)."""
        return Param(name, default, ParamType.SIZE, doc, parse_size,
                     implemented=implemented, inert=inert)

    @staticmethod
    def time(name: builtins.str, default: builtins.str, doc: builtins.str, *,
             unit: builtins.str = "s", implemented: builtins.bool = False,
             inert: builtins.bool = False) -> Param[builtins.float]:
        """A time, read in seconds; ``unit`` applies to a value without a suffix."""
        return Param(name, default, ParamType.TIME, doc,
                     functools.partial(parse_time, unit=unit), time_unit=unit,
                     implemented=implemented, inert=inert)

    @staticmethod
    def list(name: builtins.str, default: builtins.str, doc: builtins.str, *,
             expand: builtins.bool = True, implemented: builtins.bool = False,
             inert: builtins.bool = False) -> Param[builtins.list[builtins.str]]:
        """A list: commas and whitespace separate elements, ``{ ... }`` groups one."""
        return Param(name, default, ParamType.LIST, doc, split_list, expand=expand,
                     implemented=implemented, inert=inert)


def constant_name(name: builtins.str) -> builtins.str:
    """The module constant that declares parameter ``name``: ``SMTPD_TIMEOUT``.

    A name that is not an identifier once upper-cased (``2bounce_notice_recipient``)
    gets the prefix ``PARAM_``.
    """
    upper = name.upper()
    return upper if upper.isidentifier() else f"PARAM_{upper}"


# --- identity -------------------------------------------------------------------
MYHOSTNAME = Param.str(
    "myhostname", "",
    "internet hostname of this mail system; default: the FQDN of the host "
    "(computed at run time: getfqdn(), or gethostname() plus .$mydomain)",
    implemented=True)
MYDOMAIN = Param.str(
    "mydomain", "",
    "internet domain of this mail system; default: $myhostname minus its first "
    "label, or localdomain (computed at run time)",
    implemented=True)
MYORIGIN = Param.str(
    "myorigin", "$myhostname",
    "domain appended to unqualified sender addresses", implemented=True)
MYDESTINATION = Param.list(
    "mydestination", "$myhostname, localhost.$mydomain, localhost",
    "domains delivered locally by the local transport", implemented=True)
INET_INTERFACES = Param.list(
    "inet_interfaces", "all",
    "network interfaces on which mail is received", implemented=True)
INET_PROTOCOLS = Param.list(
    "inet_protocols", "all",
    "internet protocols used: ipv4, ipv6 or all", implemented=True)
MYNETWORKS = Param.list(
    "mynetworks", "",
    "trusted SMTP clients; empty means computed from mynetworks_style", implemented=True)
MYNETWORKS_STYLE = Param.str(
    "mynetworks_style", "host",
    "how mynetworks is computed when empty: host, subnet or class", implemented=True)
RELAYHOST = Param.str(
    "relayhost", "",
    "next-hop destination(s) of non-local mail ([host]:port, comma list); empty means "
    "direct (MX lookup)", implemented=True)
RELAY_DOMAINS = Param.list(
    "relay_domains", "",
    "domains (besides mydestination) this system relays mail to", implemented=True)
MAIL_NAME = Param.str(
    "mail_name", "Postfix",
    "mail system name in the SMTP greeting and Received: headers; kept \"Postfix\" "
    "so that clients parsing the banner see what they expect from a drop-in",
    implemented=True)
MAIL_VERSION = Param.str(
    "mail_version", postier.__version__,
    "version of the mail system software", implemented=True)
SMTPD_BANNER = Param.str(
    "smtpd_banner", "$myhostname ESMTP $mail_name",
    "text that follows the 220 status code in the SMTP greeting", implemented=True)
COMPATIBILITY_LEVEL = Param.str(
    "compatibility_level", "0",
    "backwards-compatibility level; postier always uses the safe (>= 2) defaults", inert=True)
MULTI_INSTANCE_NAME = Param.str(
    "multi_instance_name", "",
    "name of this instance in a multi-instance setup", implemented=True)
MULTI_INSTANCE_ENABLE = Param.bool(
    "multi_instance_enable", "no",
    "allow postmulti to start this instance")
ALTERNATE_CONFIG_DIRECTORIES = Param.list(
    "alternate_config_directories", "",
    "other configuration directories allowed")
STRESS = Param.str("stress", "", "set by the master when smtpd is overloaded (internal)")
SERVICE_NAME = Param.str("service_name", "", "read-only: the master.cf service name of the process")
PROCESS_NAME = Param.str("process_name", "", "read-only: the program name of the process")
PROCESS_ID = Param.str("process_id", "", "read-only: the process ID of the process")

# --- local delivery -------------------------------------------------------------
MAILBOX_COMMAND = Param.str(
    "mailbox_command", "",
    "command that delivers to a local mailbox (expanded at delivery time, not here)", expand=False,
    implemented=True)
MAILBOX_COMMAND_MAPS = Param.list(
    "mailbox_command_maps", "",
    "per-recipient mailbox_command lookup tables")
MAILBOX_SIZE_LIMIT = Param.size(
    "mailbox_size_limit", "51200000",
    "maximal size of a mailbox file, 0 = none", implemented=True)
MESSAGE_SIZE_LIMIT = Param.size(
    "message_size_limit", "10240000",
    "maximal size of a message, 0 = none", implemented=True)
RECIPIENT_DELIMITER = Param.str(
    "recipient_delimiter", "",
    "characters that separate a user name from an address extension", implemented=True)
MAIL_SPOOL_DIRECTORY = Param.str(
    "mail_spool_directory", "/var/mail",
    "directory of UNIX-style mailboxes (build-dependent, /var/mail on Linux)", implemented=True)
HOME_MAILBOX = Param.str(
    "home_mailbox", "",
    "mailbox file relative to the user's home (Mailbox, or Maildir/ for maildir)", implemented=True)
MAILBOX_DELIVERY_LOCK = Param.list(
    "mailbox_delivery_lock", "fcntl, dotlock",
    "mailbox locking methods (system-dependent; Linux: fcntl, dotlock)", implemented=True)
DELIVER_LOCK_ATTEMPTS = Param.int(
    "deliver_lock_attempts", "20", "maximal number of attempts to lock a mailbox",
    implemented=True)
DELIVER_LOCK_DELAY = Param.time(
    "deliver_lock_delay", "1s", "time between attempts to lock a mailbox", implemented=True)
STALE_LOCK_TIME = Param.time(
    "stale_lock_time", "500s", "age after which a mailbox dotlock file is removed",
    implemented=True)
COMMAND_EXPANSION_FILTER = Param.str(
    "command_expansion_filter",
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "characters that local(8) may pass from message attributes to external commands",
    implemented=True)
MAILBOX_TRANSPORT = Param.str(
    "mailbox_transport", "", "transport for local mailbox delivery (lmtp/smtp client)",
    implemented=True)
FALLBACK_TRANSPORT = Param.str(
    "fallback_transport", "",
    "transport for recipients not found locally")
LUSER_RELAY = Param.str("luser_relay", "", "destination for unknown local recipients", expand=False)
FORWARD_PATH = Param.list(
    "forward_path", "$home/.forward${recipient_delimiter}${extension}, $home/.forward",
    ".forward file search list (expanded at delivery time)", expand=False,
    implemented=True)
FORWARD_EXPANSION_FILTER = Param.str(
    "forward_expansion_filter",
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "characters that local(8) may put into forward_path from message attributes",
    implemented=True)
ALLOW_MAIL_TO_COMMANDS = Param.list(
    "allow_mail_to_commands", "alias, forward",
    "where delivery to |command is allowed", implemented=True)
ALLOW_MAIL_TO_FILES = Param.list(
    "allow_mail_to_files", "alias, forward",
    "where delivery to /file is allowed", implemented=True)
DEFAULT_PRIVS = Param.str(
    "default_privs", "nobody",
    "rights of the local agent for deliveries to external files and commands", implemented=True)
COMMAND_TIME_LIMIT = Param.time(
    "command_time_limit", "1000s",
    "time limit for delivery to external commands", implemented=True)
COMMAND_EXECUTION_DIRECTORY = Param.str(
    "command_execution_directory", "",
    "working directory of external commands run by local(8) (expanded at delivery time)",
    expand=False, implemented=True)
EXECUTION_DIRECTORY_EXPANSION_FILTER = Param.str(
    "execution_directory_expansion_filter",
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "characters that local(8) may put into command_execution_directory from message "
    "attributes", implemented=True)
BIFF = Param.bool("biff", "yes", "notify the local biff service of new mail", inert=True)
PROPAGATE_UNMATCHED_EXTENSIONS = Param.list(
    "propagate_unmatched_extensions", "canonical, virtual",
    "lookup tables whose results inherit an unmatched address extension", implemented=True)
OWNER_REQUEST_SPECIAL = Param.bool(
    "owner_request_special", "yes",
    "give owner-listname and listname-request addresses special treatment")
EXPAND_OWNER_ALIAS = Param.bool(
    "expand_owner_alias", "no",
    "use owner-alias as sender of mail to alias when it exists")
IMPORT_ENVIRONMENT = Param.list(
    "import_environment", "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C "
          "POSTLOG_SERVICE POSTLOG_HOSTNAME",
    "environment variables that Postfix processes inherit from the master")
EXPORT_ENVIRONMENT = Param.list(
    "export_environment", "TZ MAIL_CONFIG LANG",
    "environment variables passed on to external commands", implemented=True)

# --- tables ---------------------------------------------------------------------
ALIAS_MAPS = Param.list(
    "alias_maps", "hash:/etc/aliases",
    "alias tables used by local(8) (build-dependent; no NIS on Linux builds)", implemented=True)
ALIAS_DATABASE = Param.list(
    "alias_database", "hash:/etc/aliases",
    "alias databases built by newaliases", implemented=True)
LOCAL_RECIPIENT_MAPS = Param.list(
    "local_recipient_maps", "proxy:unix:passwd.byname $alias_maps",
    "tables of local recipients; empty disables the check", implemented=True)
PARENT_DOMAIN_MATCHES_SUBDOMAINS = Param.list(
    "parent_domain_matches_subdomains",
    "debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, "
    "qmqpd_authorized_clients, relay_domains, smtpd_access_maps",
    "uses in which a domain pattern also matches its subdomains", implemented=True)
SMTPD_NULL_ACCESS_LOOKUP_KEY = Param.str(
    "smtpd_null_access_lookup_key", "<>",
    "the access(5) key of the null sender address", implemented=True)
VIRTUAL_MAPS = Param.list("virtual_maps", "", "obsolete name of virtual_alias_maps",
                          implemented=True)
VIRTUAL_ALIAS_MAPS = Param.list(
    "virtual_alias_maps", "$virtual_maps",
    "address rewriting tables for all mail", implemented=True)
VIRTUAL_ALIAS_DOMAINS = Param.list(
    "virtual_alias_domains", "$virtual_alias_maps",
    "virtual alias domains", implemented=True)
VIRTUAL_ALIAS_RECURSION_LIMIT = Param.int(
    "virtual_alias_recursion_limit", "1000",
    "maximal nesting depth of virtual alias expansion", implemented=True)
VIRTUAL_ALIAS_EXPANSION_LIMIT = Param.int(
    "virtual_alias_expansion_limit", "1000",
    "maximal number of addresses one virtual alias expansion may produce", implemented=True)
UNKNOWN_VIRTUAL_ALIAS_REJECT_CODE = Param.int(
    "unknown_virtual_alias_reject_code", "550",
    "code for a recipient unknown in a virtual alias domain", implemented=True)
VIRTUAL_MAILBOX_DOMAINS = Param.list(
    "virtual_mailbox_domains", "$virtual_mailbox_maps",
    "virtual mailbox domains")
VIRTUAL_MAILBOX_MAPS = Param.list("virtual_mailbox_maps", "", "virtual mailbox lookup tables")
CANONICAL_MAPS = Param.list("canonical_maps", "", "address mapping tables for headers and envelope",
                            implemented=True)
SENDER_CANONICAL_MAPS = Param.list("sender_canonical_maps", "", "sender address mapping tables",
                                   implemented=True)
RECIPIENT_CANONICAL_MAPS = Param.list(
    "recipient_canonical_maps", "",
    "recipient address mapping tables", implemented=True)
REMOTE_HEADER_REWRITE_DOMAIN = Param.str(
    "remote_header_rewrite_domain", "",
    "domain appended to incomplete header addresses of remote clients (empty: their "
    "headers are not rewritten)")
RECEIVE_OVERRIDE_OPTIONS = Param.list(
    "receive_override_options", "",
    "cleanup and smtpd features turned off for mail received by this service "
    "(no_address_mappings, no_unknown_recipient_checks, …)")
ENABLE_ORIGINAL_RECIPIENT = Param.bool(
    "enable_original_recipient", "yes",
    "record the original recipient address in the queue file (orig_to=)")
_CANONICAL_CLASSES = "envelope_sender, envelope_recipient, header_sender, header_recipient"
CANONICAL_CLASSES = Param.list(
    "canonical_classes", _CANONICAL_CLASSES,
    "addresses canonical_maps applies to", implemented=True)
SENDER_CANONICAL_CLASSES = Param.list(
    "sender_canonical_classes", "envelope_sender, header_sender",
    "addresses sender_canonical_maps applies to", implemented=True)
RECIPIENT_CANONICAL_CLASSES = Param.list(
    "recipient_canonical_classes", "envelope_recipient, header_recipient",
    "addresses recipient_canonical_maps applies to", implemented=True)
RELAY_RECIPIENT_MAPS = Param.list(
    "relay_recipient_maps", "", "valid recipients in relay_domains", implemented=True)
TRANSPORT_MAPS = Param.list(
    "transport_maps", "",
    "tables mapping recipients to message delivery transports", implemented=True)
DEFAULT_DATABASE_TYPE = Param.str(
    "default_database_type", "hash",
    "default lookup table type for newaliases and postmap")

# --- transports -----------------------------------------------------------------
LOCAL_TRANSPORT = Param.str(
    "local_transport", "local:$myhostname",
    "transport for mydestination domains", implemented=True)
DEFAULT_TRANSPORT = Param.str(
    "default_transport", "smtp", "transport for other destinations", implemented=True)
RELAY_TRANSPORT = Param.str(
    "relay_transport", "relay", "transport for relay_domains", implemented=True)
FALLBACK_RELAY = Param.list(
    "fallback_relay", "",
    "obsolete name of smtp_fallback_relay", implemented=True)
VIRTUAL_TRANSPORT = Param.str(
    "virtual_transport", "virtual",
    "transport for virtual mailbox domains")
DEFER_TRANSPORTS = Param.list(
    "defer_transports", "",
    "transports whose deliveries are deferred", implemented=True)
SOFT_BOUNCE = Param.bool(
    "soft_bounce", "no",
    "turn hard rejects into soft ones (for testing)", implemented=True)

# --- smtpd restrictions -----------------------------------------------------------
SMTPD_CLIENT_RESTRICTIONS = Param.list(
    "smtpd_client_restrictions", "",
    "restrictions applied to the client", implemented=True)
SMTPD_HELO_RESTRICTIONS = Param.list(
    "smtpd_helo_restrictions", "",
    "restrictions applied to HELO/EHLO", implemented=True)
SMTPD_SENDER_RESTRICTIONS = Param.list(
    "smtpd_sender_restrictions", "",
    "restrictions applied to MAIL FROM", implemented=True)
SMTPD_RECIPIENT_RESTRICTIONS = Param.list(
    "smtpd_recipient_restrictions", "",
    "restrictions applied to RCPT TO", implemented=True)
SMTPD_RELAY_RESTRICTIONS = Param.list(
    "smtpd_relay_restrictions",
    "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
    "relay control restrictions applied to RCPT TO before smtpd_recipient_restrictions",
    implemented=True)
SMTPD_DATA_RESTRICTIONS = Param.list("smtpd_data_restrictions", "", "restrictions applied to DATA",
                                     implemented=True)
SMTPD_END_OF_DATA_RESTRICTIONS = Param.list(
    "smtpd_end_of_data_restrictions", "",
    "restrictions applied at the end of message data", implemented=True)
SMTPD_ETRN_RESTRICTIONS = Param.list("smtpd_etrn_restrictions", "", "restrictions applied to ETRN",
                                     implemented=True)
FAST_FLUSH_DOMAINS = Param.list(
    "fast_flush_domains", "$relay_domains",
    "destinations ETRN (and postqueue -s) may flush; others get 459", implemented=True)
SMTPD_AUTHORIZED_XCLIENT_HOSTS = Param.list(
    "smtpd_authorized_xclient_hosts", "",
    "clients (addresses, networks, /files, type:tables) allowed XCLIENT", implemented=True)
SMTPD_AUTHORIZED_XFORWARD_HOSTS = Param.list(
    "smtpd_authorized_xforward_hosts", "",
    "clients (addresses, networks, /files, type:tables) allowed XFORWARD", implemented=True)
SMTPD_HELO_REQUIRED = Param.bool(
    "smtpd_helo_required", "no",
    "require HELO or EHLO before MAIL FROM", implemented=True)
SMTPD_DELAY_REJECT = Param.bool(
    "smtpd_delay_reject", "yes",
    "evaluate client, HELO and sender restrictions at RCPT TO time", implemented=True)
SMTPD_REJECT_UNLISTED_RECIPIENT = Param.bool(
    "smtpd_reject_unlisted_recipient", "yes",
    "reject recipients unknown in local or virtual recipient tables", implemented=True)
SMTPD_REJECT_UNLISTED_SENDER = Param.bool(
    "smtpd_reject_unlisted_sender", "no",
    "reject senders unknown in local or virtual recipient tables", implemented=True)
STRICT_RFC821_ENVELOPES = Param.bool(
    "strict_rfc821_envelopes", "no",
    "require <> around MAIL FROM/RCPT TO addresses")
DISABLE_VRFY_COMMAND = Param.bool(
    "disable_vrfy_command", "no",
    "disable the SMTP VRFY command", implemented=True)
SMTPD_FORBID_BARE_NEWLINE = Param.str(
    "smtpd_forbid_bare_newline", "normalize",
    "bare <LF> in SMTP: normalize (Postfix 3.9 default), yes/reject or no")
SMTPD_FORBID_BARE_NEWLINE_EXCLUSIONS = Param.list(
    "smtpd_forbid_bare_newline_exclusions", "$mynetworks",
    "clients exempt from smtpd_forbid_bare_newline")
SMTPD_FORBIDDEN_COMMANDS = Param.list(
    "smtpd_forbidden_commands", "CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}",
    "unknown commands (words or type:table) that end the session with 221",
    implemented=True)
SMTPD_FORBID_UNAUTH_PIPELINING = Param.bool(
    "smtpd_forbid_unauth_pipelining", "yes",
    "disconnect clients that pipeline commands without PIPELINING", implemented=True)
SMTPD_SENDER_LOGIN_MAPS = Param.list(
    "smtpd_sender_login_maps", "", "owners of MAIL FROM addresses", implemented=True)

# --- smtpd limits -------------------------------------------------------------------
SMTPD_TIMEOUT = Param.time(
    "smtpd_timeout", "${stress?{10}:{300}}s",
    "time limit for sending a response or receiving a request", implemented=True)
SMTPD_HARD_ERROR_LIMIT = Param.int(
    "smtpd_hard_error_limit", "${stress?{1}:{20}}",
    "errors after which the session is disconnected", implemented=True)
SMTPD_SOFT_ERROR_LIMIT = Param.int(
    "smtpd_soft_error_limit", "10",
    "errors after which each reply is delayed", implemented=True)
SMTPD_ERROR_SLEEP_TIME = Param.time(
    "smtpd_error_sleep_time", "1s",
    "delay before replying once over the soft limit", implemented=True)
SMTPD_RECIPIENT_LIMIT = Param.int(
    "smtpd_recipient_limit", "1000",
    "maximal number of recipients per message", implemented=True)
LINE_LENGTH_LIMIT = Param.int(
    "line_length_limit", "2048",
    "maximal length of a line before it is broken up", implemented=True)
HEADER_SIZE_LIMIT = Param.size("header_size_limit", "102400", "maximal size of a message header")
SMTPUTF8_ENABLE = Param.bool("smtputf8_enable", "yes", "enable SMTPUTF8 support", implemented=True)
SMTPUTF8_AUTODETECT_CLASSES = Param.list(
    "smtputf8_autodetect_classes", "sendmail, verify",
    "mail origin classes whose UTF-8 envelope or headers mark the message SMTPUTF8",
    implemented=True)
STRICT_SMTPUTF8 = Param.bool(
    "strict_smtputf8", "no",
    "refuse a UTF-8 envelope address without the SMTPUTF8 parameter (553 5.6.7)",
    implemented=True)

# --- client rate and concurrency limits (anvil(8), smtpd(8)) ---------------------------
SMTPD_CLIENT_CONNECTION_COUNT_LIMIT = Param.int(
    "smtpd_client_connection_count_limit", "50",
    "simultaneous connections one client may have to one service (0: no limit)",
    implemented=True)
SMTPD_CLIENT_CONNECTION_RATE_LIMIT = Param.int(
    "smtpd_client_connection_rate_limit", "0",
    "connections one client may make per anvil_rate_time_unit (0: no limit)",
    implemented=True)
SMTPD_CLIENT_MESSAGE_RATE_LIMIT = Param.int(
    "smtpd_client_message_rate_limit", "0",
    "MAIL commands one client may send per anvil_rate_time_unit (0: no limit)",
    implemented=True)
SMTPD_CLIENT_RECIPIENT_RATE_LIMIT = Param.int(
    "smtpd_client_recipient_rate_limit", "0",
    "RCPT commands one client may send per anvil_rate_time_unit (0: no limit)",
    implemented=True)
SMTPD_CLIENT_NEW_TLS_SESSION_RATE_LIMIT = Param.int(
    "smtpd_client_new_tls_session_rate_limit", "0",
    "new TLS sessions one client may negotiate per anvil_rate_time_unit (0: no limit)",
    implemented=True)
SMTPD_CLIENT_AUTH_RATE_LIMIT = Param.int(
    "smtpd_client_auth_rate_limit", "0",
    "AUTH commands one client may send per anvil_rate_time_unit (0: no limit)",
    implemented=True)
SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS = Param.list(
    "smtpd_client_event_limit_exceptions",
    "${smtpd_client_connection_limit_exceptions:$mynetworks}",
    "clients (addresses, networks, host names, tables) exempt from the client limits",
    implemented=True)
ANVIL_RATE_TIME_UNIT = Param.time(
    "anvil_rate_time_unit", "60s",
    "the time unit over which anvil counts client rates", implemented=True)
ANVIL_STATUS_UPDATE_TIME = Param.time(
    "anvil_status_update_time", "600s",
    "how often anvil logs its peak usage statistics", implemented=True)

# --- SASL and TLS ---------------------------------------------------------------------
SMTPD_SASL_AUTH_ENABLE = Param.bool(
    "smtpd_sasl_auth_enable", "no",
    "enable SASL authentication in the SMTP server", implemented=True)
SMTPD_SASL_TYPE = Param.str(
    "smtpd_sasl_type", "cyrus", "SASL plug-in type: cyrus or dovecot", implemented=True)
SMTPD_SASL_PATH = Param.str(
    "smtpd_sasl_path", "smtpd",
    "Dovecot: auth socket (relative to queue_directory) or inet:host:port; "
    "Cyrus: the application name (smtpd.conf)", implemented=True)
SMTPD_SASL_SERVICE = Param.str(
    "smtpd_sasl_service", "smtp", "the service name given to the SASL server",
    implemented=True)
SMTPD_SASL_AUTHENTICATED_HEADER = Param.bool(
    "smtpd_sasl_authenticated_header", "no",
    "record the SASL login name in the Received: header", implemented=True)
SMTPD_SASL_SECURITY_OPTIONS = Param.list(
    "smtpd_sasl_security_options", "noanonymous",
    "SASL security options", implemented=True)
SMTPD_SASL_TLS_SECURITY_OPTIONS = Param.list(
    "smtpd_sasl_tls_security_options", "$smtpd_sasl_security_options",
    "SASL security options under TLS", implemented=True)
SMTPD_SASL_LOCAL_DOMAIN = Param.str(
    "smtpd_sasl_local_domain", "", "the SASL realm (Cyrus: given to saslauthd)",
    implemented=True)
CYRUS_SASL_CONFIG_PATH = Param.str(
    "cyrus_sasl_config_path", "", "where Cyrus's smtpd.conf is searched (colon-separated)",
    implemented=True)
BROKEN_SASL_AUTH_CLIENTS = Param.bool(
    "broken_sasl_auth_clients", "no",
    "also announce AUTH=mechanism for old clients", implemented=True)
SMTPD_TLS_SECURITY_LEVEL = Param.str(
    "smtpd_tls_security_level", "",
    "SMTP server TLS level: none, may or encrypt (empty: smtpd_use_tls/smtpd_enforce_tls)",
    implemented=True)
SMTPD_ENFORCE_TLS = Param.bool(
    "smtpd_enforce_tls", "no",
    "obsolete: require TLS (use smtpd_tls_security_level)", implemented=True)
SMTPD_USE_TLS = Param.bool(
    "smtpd_use_tls", "no",
    "obsolete: offer TLS (use smtpd_tls_security_level)", implemented=True)
SMTPD_TLS_WRAPPERMODE = Param.bool(
    "smtpd_tls_wrappermode", "no",
    "TLS on connect (port 465), not STARTTLS", implemented=True)
SMTPD_TLS_CERT_FILE = Param.str(
    "smtpd_tls_cert_file", "", "PEM server certificate file", implemented=True)
SMTPD_TLS_KEY_FILE = Param.str(
    "smtpd_tls_key_file", "$smtpd_tls_cert_file",
    "PEM server private key file", implemented=True)
SMTPD_TLS_CHAIN_FILES = Param.list(
    "smtpd_tls_chain_files", "",
    "PEM files, each with a private key and its certificate chain", implemented=True)
SMTPD_TLS_CAFILE = Param.str(
    "smtpd_tls_CAfile", "",
    "CA certificates trusted for client certificates", implemented=True)
SMTPD_TLS_CAPATH = Param.str(
    "smtpd_tls_CApath", "",
    "directory of CA certificates trusted for client certificates", implemented=True)
SMTPD_TLS_AUTH_ONLY = Param.bool(
    "smtpd_tls_auth_only", "no", "offer AUTH only over TLS", implemented=True)
SMTPD_TLS_LOGLEVEL = Param.int(
    "smtpd_tls_loglevel", "0", "SMTP server TLS logging level", implemented=True)
SMTPD_TLS_RECEIVED_HEADER = Param.bool(
    "smtpd_tls_received_header", "no",
    "record TLS details in the Received: header", implemented=True)
SMTPD_TLS_PROTOCOLS = Param.list(
    "smtpd_tls_protocols", ">=TLSv1",
    "TLS protocols offered at level may (never below TLSv1.2 in postier)", implemented=True)
SMTPD_TLS_MANDATORY_PROTOCOLS = Param.list(
    "smtpd_tls_mandatory_protocols", ">=TLSv1",
    "TLS protocols accepted when TLS is required (never below TLSv1.2 in postier)",
    implemented=True)
SMTPD_TLS_CIPHERS = Param.str(
    "smtpd_tls_ciphers", "medium",
    "cipher grade at level may: null, export, low, medium or high", implemented=True)
SMTPD_TLS_MANDATORY_CIPHERS = Param.str(
    "smtpd_tls_mandatory_ciphers", "medium",
    "cipher grade when TLS is required", implemented=True)
SMTPD_TLS_EXCLUDE_CIPHERS = Param.list(
    "smtpd_tls_exclude_ciphers", "",
    "ciphers or cipher types excluded at every level", implemented=True)
SMTPD_TLS_MANDATORY_EXCLUDE_CIPHERS = Param.list(
    "smtpd_tls_mandatory_exclude_ciphers", "",
    "ciphers or cipher types also excluded when TLS is required", implemented=True)
SMTPD_TLS_DH1024_PARAM_FILE = Param.str(
    "smtpd_tls_dh1024_param_file", "",
    "DH parameters for the non-export EDH ciphers", implemented=True)
SMTPD_TLS_EECDH_GRADE = Param.str(
    "smtpd_tls_eecdh_grade", "auto",
    "ECDHE curve choice (OpenSSL's automatic selection in postier)", inert=True)
SMTPD_TLS_ASK_CCERT = Param.bool(
    "smtpd_tls_ask_ccert", "no",
    "ask a remote SMTP client for a certificate", implemented=True)
SMTPD_TLS_REQ_CCERT = Param.bool(
    "smtpd_tls_req_ccert", "no",
    "require a verified client certificate (at level encrypt)", implemented=True)
SMTPD_STARTTLS_TIMEOUT = Param.time(
    "smtpd_starttls_timeout", "${stress?{10}:{300}}s",
    "time limit for the TLS handshake", implemented=True)
TLS_SERVER_SNI_MAPS = Param.list(
    "tls_server_sni_maps", "",
    "tables from a TLS SNI name to the files of its private key and certificate chain",
    implemented=True)
SMTPD_TLS_FINGERPRINT_DIGEST = Param.str(
    "smtpd_tls_fingerprint_digest", "sha256",
    "digest of client certificate and public key fingerprints (md5, sha1, sha256, …)",
    implemented=True)
RELAY_CLIENTCERTS = Param.list(
    "relay_clientcerts", "",
    "tables of client certificate or public key fingerprints permit_tls_clientcerts "
    "lets relay", implemented=True)
TLS_HIGH_CIPHERLIST = Param.str(
    "tls_high_cipherlist", "aNULL:-aNULL:HIGH:@STRENGTH",
    "OpenSSL cipher list of the high grade", implemented=True)
TLS_MEDIUM_CIPHERLIST = Param.str(
    "tls_medium_cipherlist", "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
    "OpenSSL cipher list of the medium grade", implemented=True)
TLS_LOW_CIPHERLIST = Param.str(
    "tls_low_cipherlist", "aNULL:-aNULL:HIGH:MEDIUM:LOW:+RC4:@STRENGTH",
    "OpenSSL cipher list of the low grade", implemented=True)
TLS_EXPORT_CIPHERLIST = Param.str(
    "tls_export_cipherlist", "aNULL:-aNULL:HIGH:MEDIUM:LOW:EXPORT:+RC4:@STRENGTH",
    "OpenSSL cipher list of the export grade", implemented=True)
TLS_NULL_CIPHERLIST = Param.str(
    "tls_null_cipherlist", "eNULL:!aNULL",
    "OpenSSL cipher list of the null grade", implemented=True)
SMTPD_TLS_SESSION_CACHE_DATABASE = Param.str(
    "smtpd_tls_session_cache_database", "",
    "SMTP server TLS session cache")
SMTP_TLS_SECURITY_LEVEL = Param.str(
    "smtp_tls_security_level", "",
    "SMTP client TLS level: none, may, encrypt, verify, secure", implemented=True)
SMTP_TLS_CAFILE = Param.str(
    "smtp_tls_CAfile", "",
    "file of trusted CA certificates (SMTP client)", implemented=True)
SMTP_TLS_CAPATH = Param.str(
    "smtp_tls_CApath", "",
    "directory of trusted CA certificates (SMTP client)", implemented=True)
SMTP_TLS_LOGLEVEL = Param.int(
    "smtp_tls_loglevel", "0", "SMTP client TLS logging level", implemented=True)
SMTP_TLS_VERIFY_CERT_MATCH = Param.list(
    "smtp_tls_verify_cert_match", "hostname",
    "names a server certificate must match at level verify", implemented=True)
SMTP_TLS_SECURE_CERT_MATCH = Param.list(
    "smtp_tls_secure_cert_match", "nexthop, dot-nexthop",
    "names a server certificate must match at level secure", implemented=True)
SMTP_TLS_SESSION_CACHE_DATABASE = Param.str(
    "smtp_tls_session_cache_database", "",
    "SMTP client TLS session cache")
SMTP_SASL_AUTH_ENABLE = Param.bool(
    "smtp_sasl_auth_enable", "no",
    "enable SASL authentication in the SMTP client", implemented=True)
SMTP_SASL_PASSWORD_MAPS = Param.list(
    "smtp_sasl_password_maps", "",
    "SMTP client SASL passwords per destination", implemented=True)
SMTP_SASL_SECURITY_OPTIONS = Param.list(
    "smtp_sasl_security_options", "noplaintext, noanonymous",
    "SMTP client SASL mechanism restrictions without TLS", implemented=True)
SMTP_SASL_TLS_SECURITY_OPTIONS = Param.list(
    "smtp_sasl_tls_security_options", "$smtp_sasl_security_options",
    "SMTP client SASL mechanism restrictions over TLS", implemented=True)
SMTP_SASL_AUTH_SOFT_BOUNCE = Param.bool(
    "smtp_sasl_auth_soft_bounce", "yes",
    "defer, not bounce, after a 5xx SASL authentication failure", implemented=True)
SMTP_HELO_NAME = Param.str(
    "smtp_helo_name", "$myhostname",
    "hostname sent by the SMTP client in HELO/EHLO", implemented=True)

# --- SMTP client (postier.smtp) ------------------------------------------------------
SMTP_CONNECT_TIMEOUT = Param.time(
    "smtp_connect_timeout", "30s",
    "time limit for the SMTP client to complete a TCP connection", implemented=True)
SMTP_HELO_TIMEOUT = Param.time(
    "smtp_helo_timeout", "300s",
    "time limit for the greeting and the reply to EHLO/HELO", implemented=True)
SMTP_MAIL_TIMEOUT = Param.time(
    "smtp_mail_timeout", "300s", "time limit for the reply to MAIL FROM", implemented=True)
SMTP_RCPT_TIMEOUT = Param.time(
    "smtp_rcpt_timeout", "300s", "time limit for the reply to RCPT TO", implemented=True)
SMTP_DATA_INIT_TIMEOUT = Param.time(
    "smtp_data_init_timeout", "120s", "time limit for the reply to DATA", implemented=True)
SMTP_DATA_XFER_TIMEOUT = Param.time(
    "smtp_data_xfer_timeout", "180s",
    "time limit for sending the message content (per write)", implemented=True)
SMTP_DATA_DONE_TIMEOUT = Param.time(
    "smtp_data_done_timeout", "600s",
    "time limit for the reply to the end of data", implemented=True)
SMTP_QUIT_TIMEOUT = Param.time(
    "smtp_quit_timeout", "300s", "time limit for the reply to QUIT", implemented=True)
SMTP_BIND_ADDRESS = Param.str(
    "smtp_bind_address", "",
    "local IPv4 address for outgoing SMTP connections; empty: the system chooses",
    implemented=True)
SMTP_BIND_ADDRESS6 = Param.str(
    "smtp_bind_address6", "",
    "local IPv6 address for outgoing SMTP connections", implemented=True)
SMTP_FALLBACK_RELAY = Param.list(
    "smtp_fallback_relay", "$fallback_relay",
    "next hops tried when the destination's MX hosts cannot be reached", implemented=True)
SMTP_CONNECTION_CACHE_ON_DEMAND = Param.bool(
    "smtp_connection_cache_on_demand", "yes",
    "keep a connection open after a delivery for the next message to the same "
    "destination", implemented=True)
SMTP_CONNECTION_CACHE_TIME_LIMIT = Param.time(
    "smtp_connection_cache_time_limit", "2s",
    "how long an unused cached connection stays open", implemented=True)
SMTP_CONNECTION_REUSE_TIME_LIMIT = Param.time(
    "smtp_connection_reuse_time_limit", "300s",
    "how long after its start a connection may still be reused", implemented=True)
SMTP_DESTINATION_CONCURRENCY_LIMIT = Param.int(
    "smtp_destination_concurrency_limit", "$default_destination_concurrency_limit",
    "parallel deliveries to one destination by the smtp transport", implemented=True)
SMTP_DESTINATION_RECIPIENT_LIMIT = Param.int(
    "smtp_destination_recipient_limit", "$default_destination_recipient_limit",
    "recipients per delivery request of the smtp transport", implemented=True)
LMTP_DESTINATION_CONCURRENCY_LIMIT = Param.int(
    "lmtp_destination_concurrency_limit", "$default_destination_concurrency_limit",
    "parallel deliveries to one destination by the lmtp transport", implemented=True)
LMTP_DESTINATION_RECIPIENT_LIMIT = Param.int(
    "lmtp_destination_recipient_limit", "$default_destination_recipient_limit",
    "recipients per delivery request of the lmtp transport", implemented=True)
TLS_RANDOM_SOURCE = Param.str(
    "tls_random_source", "dev:/dev/urandom",
    "external entropy source for TLS")

# --- reject codes --------------------------------------------------------------------
UNKNOWN_LOCAL_RECIPIENT_REJECT_CODE = Param.int(
    "unknown_local_recipient_reject_code", "550",
    "code for a recipient unknown in local_recipient_maps", implemented=True)
UNKNOWN_RELAY_RECIPIENT_REJECT_CODE = Param.int(
    "unknown_relay_recipient_reject_code", "550",
    "code for a recipient unknown in relay_recipient_maps", implemented=True)
UNKNOWN_ADDRESS_REJECT_CODE = Param.int(
    "unknown_address_reject_code", "450",
    "code for a sender or recipient domain that does not resolve", implemented=True)
RELAY_DOMAINS_REJECT_CODE = Param.int(
    "relay_domains_reject_code", "554",
    "code for a refused relay attempt", implemented=True)
ACCESS_MAP_REJECT_CODE = Param.int(
    "access_map_reject_code", "554",
    "code for an access table REJECT", implemented=True)
ACCESS_MAP_DEFER_CODE = Param.int(
    "access_map_defer_code", "450",
    "code for an access table DEFER", implemented=True)
NON_FQDN_REJECT_CODE = Param.int(
    "non_fqdn_reject_code", "504",
    "code for a non-FQDN address or hostname", implemented=True)
INVALID_HOSTNAME_REJECT_CODE = Param.int(
    "invalid_hostname_reject_code", "501",
    "code for an invalid HELO hostname", implemented=True)
UNKNOWN_CLIENT_REJECT_CODE = Param.int(
    "unknown_client_reject_code", "450",
    "code for a client without a hostname", implemented=True)
UNKNOWN_HOSTNAME_REJECT_CODE = Param.int(
    "unknown_hostname_reject_code", "450",
    "code for an unknown HELO hostname", implemented=True)
UNVERIFIED_RECIPIENT_REJECT_CODE = Param.int(
    "unverified_recipient_reject_code", "450",
    "code for an unverified recipient")
MULTI_RECIPIENT_BOUNCE_REJECT_CODE = Param.int(
    "multi_recipient_bounce_reject_code", "550",
    "code for a multi-recipient bounce message", implemented=True)
PLAINTEXT_REJECT_CODE = Param.int(
    "plaintext_reject_code", "450",
    "code for reject_plaintext_session", implemented=True)
MAPS_RBL_REJECT_CODE = Param.int(
    "maps_rbl_reject_code", "554",
    "code ($rbl_code) for a client or domain found in a DNS block list", implemented=True)
DEFAULT_RBL_REPLY = Param.str(
    "default_rbl_reply",
    "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using "
    "$rbl_domain${rbl_reason?; $rbl_reason}",
    "template of the reply to a DNS block list hit", expand=False, implemented=True)
RBL_REPLY_MAPS = Param.list(
    "rbl_reply_maps", "",
    "reply templates by DNS block list domain", implemented=True)
SMTPD_RESTRICTION_CLASSES = Param.list(
    "smtpd_restriction_classes", "",
    "names of user-defined restriction lists", implemented=True)
SMTPD_POLICY_SERVICE_TIMEOUT = Param.time(
    "smtpd_policy_service_timeout", "100s",
    "time limit to connect to, write to or read from a policy server", implemented=True)
SMTPD_POLICY_SERVICE_MAX_IDLE = Param.time(
    "smtpd_policy_service_max_idle", "300s",
    "time after which an idle policy service connection is closed", implemented=True)
SMTPD_POLICY_SERVICE_MAX_TTL = Param.time(
    "smtpd_policy_service_max_ttl", "1000s",
    "time after which an active policy service connection is closed", implemented=True)
SMTPD_POLICY_SERVICE_DEFAULT_ACTION = Param.str(
    "smtpd_policy_service_default_action", "451 4.3.5 Server configuration problem",
    "what to do when a policy server gives no usable answer", implemented=True)
SMTPD_POLICY_SERVICE_TRY_LIMIT = Param.int(
    "smtpd_policy_service_try_limit", "2",
    "how many times to try a policy server request", implemented=True)
SMTPD_POLICY_SERVICE_RETRY_DELAY = Param.time(
    "smtpd_policy_service_retry_delay", "1s",
    "delay before a policy server request is tried again", implemented=True)
SMTPD_POLICY_SERVICE_REQUEST_LIMIT = Param.int(
    "smtpd_policy_service_request_limit", "0",
    "requests per policy service connection (0: no limit)", implemented=True)
SMTPD_POLICY_SERVICE_POLICY_CONTEXT = Param.str(
    "smtpd_policy_service_policy_context", "",
    "the policy_context attribute sent to policy servers", implemented=True)
REJECT_CODE = Param.int("reject_code", "554", "code for the reject restriction", implemented=True)
DEFER_CODE = Param.int("defer_code", "450", "code for the defer restriction", implemented=True)

# --- directories and files -------------------------------------------------------------
CONFIG_DIRECTORY = Param.str(
    "config_directory", "/etc/postfix",
    "directory of main.cf and master.cf", implemented=True)
QUEUE_DIRECTORY = Param.str(
    "queue_directory", "/var/spool/postfix",
    "root of the mail queue", implemented=True)
DATA_DIRECTORY = Param.str(
    "data_directory", "/var/lib/postfix",
    "directory of writable data files", inert=True)
COMMAND_DIRECTORY = Param.str(
    "command_directory", "/usr/sbin",
    "directory of the administrative commands", inert=True)
DAEMON_DIRECTORY = Param.str(
    "daemon_directory", "/usr/libexec/postfix",
    "directory of the daemon programs", inert=True)
META_DIRECTORY = Param.str("meta_directory", "$daemon_directory", "directory of the metadata files")
SHLIB_DIRECTORY = Param.str("shlib_directory", "no", "directory of shared libraries")
PROCESS_ID_DIRECTORY = Param.str(
    "process_id_directory", "pid",
    "pid file directory, relative to queue_directory")
README_DIRECTORY = Param.str("readme_directory", "no", "directory of the README files", inert=True)
HTML_DIRECTORY = Param.str(
    "html_directory", "no",
    "directory of the HTML documentation", inert=True)
MANPAGE_DIRECTORY = Param.str(
    "manpage_directory", "/usr/local/man",
    "directory of the manual pages", inert=True)
SAMPLE_DIRECTORY = Param.str(
    "sample_directory", "/etc/postfix",
    "directory of the sample files", inert=True)
SENDMAIL_PATH = Param.str(
    "sendmail_path", "/usr/sbin/sendmail",
    "full path of the sendmail command", inert=True)
NEWALIASES_PATH = Param.str(
    "newaliases_path", "/usr/bin/newaliases",
    "full path of newaliases", inert=True)
MAILQ_PATH = Param.str("mailq_path", "/usr/bin/mailq", "full path of mailq", inert=True)
MAIL_OWNER = Param.str(
    "mail_owner", "postfix",
    "owner of the queue and of most daemon processes", implemented=True)
SETGID_GROUP = Param.str(
    "setgid_group", "postdrop",
    "group of the set-gid commands and maildrop", implemented=True)

# --- logging ---------------------------------------------------------------------------
MAILLOG_FILE = Param.str(
    "maillog_file", "",
    "log file written by postlogd; empty means syslog", implemented=True)
SYSLOG_NAME = Param.str(
    "syslog_name", "${multi_instance_name?{$multi_instance_name}:{postfix}}",
    "prefix of logged program names", implemented=True)
SYSLOG_FACILITY = Param.str("syslog_facility", "mail", "syslog facility", implemented=True)
MAILLOG_FILE_PREFIXES = Param.list(
    "maillog_file_prefixes", "/var, /dev/stdout",
    "allowed prefixes of maillog_file (a start-time check)", implemented=True)
MAILLOG_FILE_PERMISSIONS = Param.str(
    "maillog_file_permissions", "0600",
    "mode of maillog_file when created: 0600, 0640 or 0644", implemented=True)
DEBUG_PEER_LEVEL = Param.int("debug_peer_level", "2", "extra verbosity for debug_peer_list hosts")
DEBUG_PEER_LIST = Param.list("debug_peer_list", "", "hosts that get verbose logging")
DEBUGGER_COMMAND = Param.str(
    "debugger_command", "", "command run when a daemon is started with -D (postier has no -D)",
    expand=False, inert=True)
NOTIFY_CLASSES = Param.list(
    "notify_classes", "resource, software",
    "problem classes reported to the postmaster (postier acts on bounce, 2bounce and "
    "delay; resource, software, policy, protocol and data are accepted and have no "
    "notices yet)", implemented=True)

# --- queue -----------------------------------------------------------------------------
QUEUE_RUN_DELAY = Param.time(
    "queue_run_delay", "300s",
    "interval between deferred queue scans", implemented=True)
MINIMAL_BACKOFF_TIME = Param.time(
    "minimal_backoff_time", "300s",
    "minimal time between delivery attempts", implemented=True)
MAXIMAL_BACKOFF_TIME = Param.time(
    "maximal_backoff_time", "4000s",
    "maximal time between delivery attempts", implemented=True)
MAXIMAL_QUEUE_LIFETIME = Param.time(
    "maximal_queue_lifetime", "5d",
    "time after which undeliverable mail bounces", unit="d", implemented=True)
BOUNCE_QUEUE_LIFETIME = Param.time(
    "bounce_queue_lifetime", "5d",
    "same, for bounce messages", unit="d", implemented=True)
DEFAULT_DESTINATION_CONCURRENCY_LIMIT = Param.int(
    "default_destination_concurrency_limit", "20",
    "parallel deliveries to one destination (transport_destination_concurrency_limit "
    "overrides it per transport)", implemented=True)
DEFAULT_DESTINATION_RECIPIENT_LIMIT = Param.int(
    "default_destination_recipient_limit", "50",
    "recipients per delivery request (transport_destination_recipient_limit overrides "
    "it per transport)", implemented=True)
INITIAL_DESTINATION_CONCURRENCY = Param.int(
    "initial_destination_concurrency", "5",
    "parallel deliveries to a destination before any delivery to it has completed",
    implemented=True)
DELAY_WARNING_TIME = Param.time(
    "delay_warning_time", "0h",
    "time after which a delay warning is sent, 0 = never", unit="h", implemented=True)
HASH_QUEUE_NAMES = Param.list(
    "hash_queue_names", "deferred, defer",
    "queues with hashed subdirectories")
HASH_QUEUE_DEPTH = Param.int("hash_queue_depth", "1", "number of hashed subdirectory levels")
ENABLE_LONG_QUEUE_IDS = Param.bool("enable_long_queue_ids", "no", "long, non-repeating queue IDs")
DEFAULT_PROCESS_LIMIT = Param.int(
    "default_process_limit", "100",
    "default maximal number of processes per service", implemented=True)
MASTER_SERVICE_DISABLE = Param.list("master_service_disable", "", "master.cf services to disable")

# --- headers and bounces ----------------------------------------------------------------
ALWAYS_ADD_MISSING_HEADERS = Param.bool(
    "always_add_missing_headers", "no",
    "add missing From:, To:, Date:, Message-ID: headers to all mail", implemented=True)
LOCAL_HEADER_REWRITE_CLIENTS = Param.list(
    "local_header_rewrite_clients", "permit_inet_interfaces",
    "clients whose mail gets missing Message-Id:, Date:, From: headers", implemented=True)
APPEND_DOT_MYDOMAIN = Param.bool(
    "append_dot_mydomain", "no",
    "append .$mydomain to user@host addresses", implemented=True)
ALLOW_PERCENT_HACK = Param.bool(
    "allow_percent_hack", "yes",
    "rewrite user%domain to user@domain in a local domain", implemented=True)
SWAP_BANGPATH = Param.bool(
    "swap_bangpath", "yes",
    "rewrite site!user to user@site in a local domain", implemented=True)
APPEND_AT_MYORIGIN = Param.bool(
    "append_at_myorigin", "yes",
    "append @$myorigin to addresses without a domain", implemented=True)
HOPCOUNT_LIMIT = Param.int(
    "hopcount_limit", "50",
    "maximal number of Received: headers in the primary header block", implemented=True)
PARAM_2BOUNCE_NOTICE_RECIPIENT = Param.str(
    "2bounce_notice_recipient", "postmaster",
    "recipient of double-bounce notices", implemented=True)
BOUNCE_NOTICE_RECIPIENT = Param.str(
    "bounce_notice_recipient", "postmaster",
    "recipient of bounce notices", implemented=True)
DELAY_NOTICE_RECIPIENT = Param.str(
    "delay_notice_recipient", "postmaster",
    "recipient of postmaster delay notices", implemented=True)
DOUBLE_BOUNCE_SENDER = Param.str(
    "double_bounce_sender", "double-bounce",
    "sender of double-bounce notices", implemented=True)
EMPTY_ADDRESS_RECIPIENT = Param.str(
    "empty_address_recipient", "MAILER-DAEMON",
    "recipient of mail to the null address")


# --- postier extensions (no Postfix counterpart; docs/decisions.md) ---------------------
POSTIER_METRICS_LISTEN = Param.str(
    "postier_metrics_listen", "",
    "host:port of the Prometheus /metrics endpoint (empty: metrics off)", implemented=True)

def _registry(namespace: dict[str, Any]) -> dict[str, Param[Any]]:
    """Every ``Param`` constant of ``namespace`` by parameter name, in declaration order.

    Raises AssertionError (a declaration error) when a constant is not named after its
    parameter or a parameter is declared twice.
    """
    registry: dict[str, Param[Any]] = {}
    for const, value in namespace.items():
        if not isinstance(value, Param):
            continue
        if const != constant_name(value.name):
            raise AssertionError(
                f"{const} declares {value.name}: name it {constant_name(value.name)}"
            )
        if value.name in registry:
            raise AssertionError(f"parameter {value.name} declared twice")
        registry[value.name] = value
    return registry


_PER_TRANSPORT = re.compile(r"(?!default_)\w+_destination_(recipient|concurrency)_limit\Z")


def _postfix_only(declared: dict[str, Param[Any]]) -> dict[str, Param[Any]]:
    """``declared``, then every other name Postfix knows (``config.postfix_names``: its
    ``postconf -d``) as a string parameter with Postfix's default, neither implemented
    nor inert: setting one draws "not implemented", not "unused parameter". Postfix
    expands these itself at its own time, so their text is kept unexpanded. Left out:
    ``<transport>_destination_{recipient,concurrency}_limit`` (``local_…``), which the
    scheduler reads per transport, with its own default when not set."""
    registry = dict(declared)
    for name, default in POSTFIX_DEFAULTS.items():
        if name not in registry and not _PER_TRANSPORT.match(name):
            registry[name] = Param.str(name, default, "a Postfix parameter postier does not "
                                       "implement", expand=False)
    return registry


#: The registry, by parameter name: postier's declarations, then Postfix's other names.
PARAMS: dict[str, Param[Any]] = _postfix_only(_registry(globals()))
# every parameter is its module constant, Postfix's other names too (PARAM_… for a digit)
globals().update({constant_name(n): p for n, p in PARAMS.items()
                  if constant_name(n) not in globals()})


def unimplemented_settings(names: list[str] | set[str]) -> list[str]:
    """Of the parameters set in main.cf or master.cf, the known ones postier ignores.

    That is, those declared neither ``implemented`` nor ``inert``; unknown names are left
    to the "unused parameter" warning.
    """
    return sorted(
        n for n in names if n in PARAMS and not (PARAMS[n].implemented or PARAMS[n].inert)
    )


class ParamSource(Protocol):
    """What reads parameters through their declarations (``config.settings.Config``):
    libraries that must not depend on how the configuration is stored take this."""

    def __getitem__(self, param: Param[_V]) -> _V: ...

