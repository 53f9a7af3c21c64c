"""The parameter registry: every main.cf parameter postier knows, declared once with its default.

Follows Postfix's postconf(5): names, default values (as main.cf text, which may
refer to other parameters with ``$name``) and value types are Postfix's. Where the
Postfix default depends on the compatibility level, the Postfix >= 3.x
(``compatibility_level >= 2``) default is used, because it is the safer one. Where it
depends on the build or the host (``myhostname``, ``mydomain``), the default is
computed by ``postier.config.settings.Config`` and the text here is empty.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import postier


class ParamType(enum.Enum):
    """How a value is read: postconf(5) "boolean", "integer", "time", "size", list or string."""

    STR = "str"
    BOOL = "bool"
    INT = "int"
    TIME = "time"
    SIZE = "size"
    LIST = "list"


@dataclass(frozen=True)
class Param:
    """One main.cf parameter: name, default main.cf text, type and a one-line description.

    ``time_unit`` is the unit of a time value written without a suffix. ``expand`` is
    False for parameters that Postfix expands at delivery time with its own attribute
    set (``mailbox_command``, ``forward_path``, ``luser_relay``): the configuration
    layer returns them unexpanded.
    """

    name: str
    default: str
    type: ParamType
    doc: str
    time_unit: str = "s"
    expand: bool = True


_S, _B, _I, _T, _Z, _L = (
    ParamType.STR, ParamType.BOOL, ParamType.INT, ParamType.TIME, ParamType.SIZE, ParamType.LIST,
)

_DECLS: list[Param] = [
    # --- identity -------------------------------------------------------------------
    Param("myhostname", "", _S,
          "internet hostname of this mail system; default: the FQDN of the host "
          "(computed at run time: getfqdn(), or gethostname() plus .$mydomain)"),
    Param("mydomain", "", _S,
          "internet domain of this mail system; default: $myhostname minus its first "
          "label, or localdomain (computed at run time)"),
    Param("myorigin", "$myhostname", _S, "domain appended to unqualified sender addresses"),
    Param("mydestination", "$myhostname, localhost.$mydomain, localhost", _L,
          "domains delivered locally by the local transport"),
    Param("inet_interfaces", "all", _L, "network interfaces on which mail is received"),
    Param("inet_protocols", "all", _L, "internet protocols used: ipv4, ipv6 or all"),
    Param("mynetworks", "", _L,
          "trusted SMTP clients; empty means computed from mynetworks_style"),
    Param("mynetworks_style", "host", _S,
          "how mynetworks is computed when empty: host, subnet or class"),
    Param("relayhost", "", _S, "next-hop destination of non-local mail; empty means direct"),
    Param("relay_domains", "", _L,
          "domains (besides mydestination) this system relays mail to"),
    Param("mail_name", "Postfix", _S,
          "mail system name in the SMTP greeting and Received: headers; kept \"Postfix\" "
          "so that clients parsing the banner see what they expect from a drop-in"),
    Param("mail_version", postier.__version__, _S, "version of the mail system software"),
    Param("smtpd_banner", "$myhostname ESMTP $mail_name", _S,
          "text that follows the 220 status code in the SMTP greeting"),
    Param("compatibility_level", "0", _S,
          "backwards-compatibility level; postier always uses the safe (>= 2) defaults"),
    Param("multi_instance_name", "", _S, "name of this instance in a multi-instance setup"),
    Param("multi_instance_enable", "no", _B, "allow postmulti to start this instance"),
    Param("alternate_config_directories", "", _L, "other configuration directories allowed"),
    Param("stress", "", _S, "set by the master when smtpd is overloaded (internal)"),
    Param("service_name", "", _S, "read-only: the master.cf service name of the process"),
    Param("process_name", "", _S, "read-only: the program name of the process"),
    Param("process_id", "", _S, "read-only: the process ID of the process"),
    # --- local delivery -------------------------------------------------------------
    Param("mailbox_command", "", _S,
          "command that delivers to a local mailbox (expanded at delivery time, not here)",
          expand=False),
    Param("mailbox_command_maps", "", _L, "per-recipient mailbox_command lookup tables"),
    Param("mailbox_size_limit", "51200000", _Z, "maximal size of a mailbox file, 0 = none"),
    Param("message_size_limit", "10240000", _Z, "maximal size of a message, 0 = none"),
    Param("recipient_delimiter", "", _S,
          "characters that separate a user name from an address extension"),
    Param("mail_spool_directory", "/var/mail", _S,
          "directory of UNIX-style mailboxes (build-dependent, /var/mail on Linux)"),
    Param("home_mailbox", "", _S,
          "mailbox file relative to the user's home (Mailbox, or Maildir/ for maildir)"),
    Param("mailbox_delivery_lock", "fcntl, dotlock", _L,
          "mailbox locking methods (system-dependent; Linux: fcntl, dotlock)"),
    Param("mailbox_transport", "", _S, "transport for local mailbox delivery"),
    Param("fallback_transport", "", _S, "transport for recipients not found locally"),
    Param("luser_relay", "", _S, "destination for unknown local recipients", expand=False),
    Param("forward_path", "$home/.forward${recipient_delimiter}${extension}, $home/.forward",
          _L, ".forward file search list (expanded at delivery time)", expand=False),
    Param("allow_mail_to_commands", "alias, forward", _L,
          "where delivery to |command is allowed"),
    Param("allow_mail_to_files", "alias, forward", _L, "where delivery to /file is allowed"),
    Param("default_privs", "nobody", _S,
          "rights of the local agent for deliveries to external files and commands"),
    Param("command_time_limit", "1000s", _T, "time limit for delivery to external commands"),
    Param("command_execution_directory", "", _S,
          "working directory of external commands run by local(8)"),
    Param("biff", "yes", _B, "notify the local biff service of new mail"),
    Param("propagate_unmatched_extensions", "canonical, virtual", _L,
          "lookup tables whose results inherit an unmatched address extension"),
    Param("owner_request_special", "yes", _B,
          "give owner-listname and listname-request addresses special treatment"),
    Param("expand_owner_alias", "no", _B,
          "use owner-alias as sender of mail to alias when it exists"),
    Param("import_environment",
          "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C "
          "POSTLOG_SERVICE POSTLOG_HOSTNAME", _L,
          "environment variables that Postfix processes inherit from the master"),
    Param("export_environment", "TZ MAIL_CONFIG LANG", _L,
          "environment variables passed on to external commands"),
    # --- tables ---------------------------------------------------------------------
    Param("alias_maps", "hash:/etc/aliases", _L,
          "alias tables used by local(8) (build-dependent; no NIS on Linux builds)"),
    Param("alias_database", "hash:/etc/aliases", _L, "alias databases built by newaliases"),
    Param("local_recipient_maps", "proxy:unix:passwd.byname $alias_maps", _L,
          "tables of local recipients; empty disables the check"),
    Param("virtual_maps", "", _L, "obsolete name of virtual_alias_maps"),
    Param("virtual_alias_maps", "$virtual_maps", _L, "address rewriting tables for all mail"),
    Param("virtual_alias_domains", "$virtual_alias_maps", _L, "virtual alias domains"),
    Param("virtual_mailbox_domains", "$virtual_mailbox_maps", _L, "virtual mailbox domains"),
    Param("virtual_mailbox_maps", "", _L, "virtual mailbox lookup tables"),
    Param("canonical_maps", "", _L, "address mapping tables for headers and envelope"),
    Param("sender_canonical_maps", "", _L, "sender address mapping tables"),
    Param("recipient_canonical_maps", "", _L, "recipient address mapping tables"),
    Param("relay_recipient_maps", "", _L, "valid recipients in relay_domains"),
    Param("transport_maps", "", _L, "tables mapping recipients to message delivery transports"),
    Param("default_database_type", "hash", _S,
          "default lookup table type for newaliases and postmap"),
    # --- transports -----------------------------------------------------------------
    Param("local_transport", "local:$myhostname", _S, "transport for mydestination domains"),
    Param("default_transport", "smtp", _S, "transport for other destinations"),
    Param("relay_transport", "relay", _S, "transport for relay_domains"),
    Param("virtual_transport", "virtual", _S, "transport for virtual mailbox domains"),
    Param("defer_transports", "", _L, "transports whose deliveries are deferred"),
    Param("soft_bounce", "no", _B, "turn hard rejects into soft ones (for testing)"),
    # --- smtpd restrictions -----------------------------------------------------------
    Param("smtpd_client_restrictions", "", _L, "restrictions applied to the client"),
    Param("smtpd_helo_restrictions", "", _L, "restrictions applied to HELO/EHLO"),
    Param("smtpd_sender_restrictions", "", _L, "restrictions applied to MAIL FROM"),
    Param("smtpd_recipient_restrictions", "", _L, "restrictions applied to RCPT TO"),
    Param("smtpd_relay_restrictions",
          "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination", _L,
          "relay control restrictions applied to RCPT TO before smtpd_recipient_restrictions"),
    Param("smtpd_data_restrictions", "", _L, "restrictions applied to DATA"),
    Param("smtpd_end_of_data_restrictions", "", _L,
          "restrictions applied at the end of message data"),
    Param("smtpd_etrn_restrictions", "", _L, "restrictions applied to ETRN"),
    Param("smtpd_helo_required", "no", _B, "require HELO or EHLO before MAIL FROM"),
    Param("smtpd_delay_reject", "yes", _B,
          "evaluate client, HELO and sender restrictions at RCPT TO time"),
    Param("smtpd_reject_unlisted_recipient", "yes", _B,
          "reject recipients unknown in local or virtual recipient tables"),
    Param("smtpd_reject_unlisted_sender", "no", _B,
          "reject senders unknown in local or virtual recipient tables"),
    Param("strict_rfc821_envelopes", "no", _B, "require <> around MAIL FROM/RCPT TO addresses"),
    Param("disable_vrfy_command", "no", _B, "disable the SMTP VRFY command"),
    Param("smtpd_forbid_bare_newline", "normalize", _S,
          "bare <LF> in SMTP: normalize (Postfix 3.9 default), yes/reject or no"),
    Param("smtpd_forbid_bare_newline_exclusions", "$mynetworks", _L,
          "clients exempt from smtpd_forbid_bare_newline"),
    Param("smtpd_forbid_unauth_pipelining", "yes", _B,
          "disconnect clients that pipeline commands without PIPELINING"),
    Param("smtpd_sender_login_maps", "", _L, "owners of MAIL FROM addresses"),
    # --- smtpd limits -------------------------------------------------------------------
    Param("smtpd_timeout", "${stress?{10}:{300}}s", _T,
          "time limit for sending a response or receiving a request"),
    Param("smtpd_hard_error_limit", "${stress?{1}:{20}}", _I,
          "errors after which the session is disconnected"),
    Param("smtpd_soft_error_limit", "10", _I, "errors after which each reply is delayed"),
    Param("smtpd_error_sleep_time", "1s", _T, "delay before replying once over the soft limit"),
    Param("smtpd_recipient_limit", "1000", _I, "maximal number of recipients per message"),
    Param("line_length_limit", "2048", _I, "maximal length of a line before it is broken up"),
    Param("header_size_limit", "102400", _Z, "maximal size of a message header"),
    Param("smtputf8_enable", "yes", _B, "enable SMTPUTF8 support"),
    # --- SASL and TLS ---------------------------------------------------------------------
    Param("smtpd_sasl_auth_enable", "no", _B, "enable SASL authentication in the SMTP server"),
    Param("smtpd_sasl_type", "cyrus", _S, "SASL plug-in type: cyrus or dovecot"),
    Param("smtpd_sasl_path", "smtpd", _S, "SASL plug-in configuration or socket path"),
    Param("smtpd_sasl_authenticated_header", "no", _B,
          "record the SASL login name in the Received: header"),
    Param("smtpd_sasl_security_options", "noanonymous", _L, "SASL security options"),
    Param("broken_sasl_auth_clients", "no", _B, "also announce AUTH=mechanism for old clients"),
    Param("smtpd_tls_security_level", "", _S, "SMTP server TLS level: none, may or encrypt"),
    Param("smtpd_enforce_tls", "no", _B, "obsolete: require TLS (use smtpd_tls_security_level)"),
    Param("smtpd_use_tls", "no", _B, "obsolete: offer TLS (use smtpd_tls_security_level)"),
    Param("smtpd_tls_wrappermode", "no", _B, "TLS on connect (port 465), not STARTTLS"),
    Param("smtpd_tls_cert_file", "", _S, "PEM server certificate file"),
    Param("smtpd_tls_key_file", "$smtpd_tls_cert_file", _S, "PEM server private key file"),
    Param("smtpd_tls_auth_only", "no", _B, "offer AUTH only over TLS"),
    Param("smtpd_tls_loglevel", "0", _I, "SMTP server TLS logging level"),
    Param("smtpd_tls_received_header", "no", _B, "record TLS details in the Received: header"),
    Param("smtpd_tls_session_cache_database", "", _S, "SMTP server TLS session cache"),
    Param("smtp_tls_security_level", "", _S, "SMTP client TLS level"),
    Param("smtp_tls_CApath", "", _S, "directory of trusted CA certificates (SMTP client)"),
    Param("smtp_tls_session_cache_database", "", _S, "SMTP client TLS session cache"),
    Param("smtp_sasl_auth_enable", "no", _B, "enable SASL authentication in the SMTP client"),
    Param("smtp_sasl_password_maps", "", _L, "SMTP client SASL passwords per destination"),
    Param("smtp_helo_name", "$myhostname", _S, "hostname sent by the SMTP client in HELO/EHLO"),
    Param("tls_random_source", "dev:/dev/urandom", _S, "external entropy source for TLS"),
    # --- reject codes --------------------------------------------------------------------
    Param("unknown_local_recipient_reject_code", "550", _I,
          "code for a recipient unknown in local_recipient_maps"),
    Param("unknown_address_reject_code", "450", _I,
          "code for a sender or recipient domain that does not resolve"),
    Param("relay_domains_reject_code", "554", _I, "code for a refused relay attempt"),
    Param("access_map_reject_code", "554", _I, "code for an access table REJECT"),
    Param("access_map_defer_code", "450", _I, "code for an access table DEFER"),
    Param("non_fqdn_reject_code", "504", _I, "code for a non-FQDN address or hostname"),
    Param("invalid_hostname_reject_code", "501", _I, "code for an invalid HELO hostname"),
    Param("unknown_client_reject_code", "450", _I, "code for a client without a hostname"),
    Param("unknown_hostname_reject_code", "450", _I, "code for an unknown HELO hostname"),
    Param("unverified_recipient_reject_code", "450", _I, "code for an unverified recipient"),
    Param("multi_recipient_bounce_reject_code", "550", _I,
          "code for a multi-recipient bounce message"),
    Param("reject_code", "554", _I, "code for the reject restriction"),
    Param("defer_code", "450", _I, "code for the defer restriction"),
    # --- directories and files -------------------------------------------------------------
    Param("config_directory", "/etc/postfix", _S, "directory of main.cf and master.cf"),
    Param("queue_directory", "/var/spool/postfix", _S, "root of the mail queue"),
    Param("data_directory", "/var/lib/postfix", _S, "directory of writable data files"),
    Param("command_directory", "/usr/sbin", _S, "directory of the administrative commands"),
    Param("daemon_directory", "/usr/libexec/postfix", _S, "directory of the daemon programs"),
    Param("meta_directory", "$daemon_directory", _S, "directory of the metadata files"),
    Param("shlib_directory", "no", _S, "directory of shared libraries"),
    Param("process_id_directory", "pid", _S, "pid file directory, relative to queue_directory"),
    Param("readme_directory", "no", _S, "directory of the README files"),
    Param("html_directory", "no", _S, "directory of the HTML documentation"),
    Param("manpage_directory", "/usr/local/man", _S, "directory of the manual pages"),
    Param("sample_directory", "/etc/postfix", _S, "directory of the sample files"),
    Param("sendmail_path", "/usr/sbin/sendmail", _S, "full path of the sendmail command"),
    Param("newaliases_path", "/usr/bin/newaliases", _S, "full path of newaliases"),
    Param("mailq_path", "/usr/bin/mailq", _S, "full path of mailq"),
    Param("mail_owner", "postfix", _S, "owner of the queue and of most daemon processes"),
    Param("setgid_group", "postdrop", _S, "group of the set-gid commands and maildrop"),
    # --- logging ---------------------------------------------------------------------------
    Param("maillog_file", "", _S, "log file written by postlogd; empty means syslog"),
    Param("syslog_name", "${multi_instance_name?{$multi_instance_name}:{postfix}}", _S,
          "prefix of logged program names"),
    Param("syslog_facility", "mail", _S, "syslog facility"),
    Param("debug_peer_level", "2", _I, "extra verbosity for debug_peer_list hosts"),
    Param("debug_peer_list", "", _L, "hosts that get verbose logging"),
    Param("notify_classes", "resource, software", _L,
          "problem classes reported to the postmaster"),
    # --- queue -----------------------------------------------------------------------------
    Param("queue_run_delay", "300s", _T, "interval between deferred queue scans"),
    Param("minimal_backoff_time", "300s", _T, "minimal time between delivery attempts"),
    Param("maximal_backoff_time", "4000s", _T, "maximal time between delivery attempts"),
    Param("maximal_queue_lifetime", "5d", _T, "time after which undeliverable mail bounces",
          time_unit="d"),
    Param("bounce_queue_lifetime", "5d", _T, "same, for bounce messages", time_unit="d"),
    Param("default_destination_concurrency_limit", "20", _I,
          "parallel deliveries to one destination (transport_destination_concurrency_limit "
          "overrides it per transport)"),
    Param("default_destination_recipient_limit", "50", _I,
          "recipients per delivery request (transport_destination_recipient_limit overrides "
          "it per transport)"),
    Param("initial_destination_concurrency", "5", _I,
          "parallel deliveries to a destination before any delivery to it has completed"),
    Param("delay_warning_time", "0h", _T, "time after which a delay warning is sent, 0 = never",
          time_unit="h"),
    Param("hash_queue_names", "deferred, defer", _L, "queues with hashed subdirectories"),
    Param("hash_queue_depth", "1", _I, "number of hashed subdirectory levels"),
    Param("enable_long_queue_ids", "no", _B, "long, non-repeating queue IDs"),
    Param("default_process_limit", "100", _I, "default maximal number of processes per service"),
    Param("master_service_disable", "", _L, "master.cf services to disable"),
    # --- headers and bounces ----------------------------------------------------------------
    Param("always_add_missing_headers", "no", _B,
          "add missing From:, To:, Date:, Message-ID: headers to all mail"),
    Param("local_header_rewrite_clients", "permit_inet_interfaces", _L,
          "clients whose message headers are rewritten to canonical form"),
    Param("append_dot_mydomain", "no", _B, "append .$mydomain to user@host addresses"),
    Param("2bounce_notice_recipient", "postmaster", _S, "recipient of double-bounce notices"),
    Param("bounce_notice_recipient", "postmaster", _S, "recipient of bounce notices"),
    Param("double_bounce_sender", "double-bounce", _S, "sender of double-bounce notices"),
    Param("empty_address_recipient", "MAILER-DAEMON", _S,
          "recipient of mail to the null address"),
]

#: The registry, by parameter name.
PARAMS: dict[str, Param] = {p.name: p for p in _DECLS}

if len(PARAMS) != len(_DECLS):  # pragma: no cover - a declaration error
    raise AssertionError("duplicate parameter declaration in postier.config.params")

#: Parameters whose value postier acts on today. Setting any other known parameter is
#: accepted (a Postfix main.cf must load as it is) but named in a warning at start and by
#: ``postier check``, so that nothing is silently ignored.
IMPLEMENTED: frozenset[str] = frozenset({
    "alias_maps", "bounce_queue_lifetime", "command_time_limit", "config_directory",
    "default_destination_concurrency_limit", "default_destination_recipient_limit",
    "default_privs", "defer_transports", "disable_vrfy_command", "home_mailbox",
    "inet_interfaces", "initial_destination_concurrency", "inet_protocols",
    "line_length_limit", "mail_name", "mail_owner",
    "mail_spool_directory", "mail_version", "mailbox_command", "mailbox_delivery_lock",
    "mailbox_size_limit", "maillog_file", "maximal_backoff_time", "maximal_queue_lifetime",
    "message_size_limit", "minimal_backoff_time", "mydestination", "mydomain", "myhostname",
    "mynetworks", "mynetworks_style", "myorigin", "queue_directory", "queue_run_delay",
    "recipient_delimiter", "relay_domains", "setgid_group", "smtpd_banner",
    "smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
    "smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_error_sleep_time",
    "smtpd_hard_error_limit", "smtpd_helo_required", "smtpd_recipient_limit",
    "smtpd_reject_unlisted_recipient", "smtpd_reject_unlisted_sender",
    "smtpd_soft_error_limit", "smtpd_timeout", "soft_bounce", "syslog_facility",
    "syslog_name", "multi_instance_name", "unknown_local_recipient_reject_code",
    "unknown_address_reject_code", "relay_domains_reject_code", "non_fqdn_reject_code",
    "invalid_hostname_reject_code", "reject_code", "defer_code", "access_map_reject_code",
    "unknown_client_reject_code", "unknown_hostname_reject_code", "access_map_defer_code",
})

#: Parameters with nothing for postier to do (paths of Postfix's own files, knobs whose
#: safe value is the only behaviour postier has); setting them draws no warning.
INERT: frozenset[str] = frozenset({
    "append_dot_mydomain", "biff", "command_directory", "compatibility_level",
    "daemon_directory", "data_directory", "html_directory", "mailq_path", "manpage_directory",
    "newaliases_path", "readme_directory", "sample_directory", "sendmail_path",
    "alias_database",
})


def unimplemented_settings(names: list[str] | set[str]) -> list[str]:
    """Of the parameters set in main.cf or master.cf, the known ones postier ignores."""
    return sorted(n for n in names if n in PARAMS and n not in IMPLEMENTED and n not in INERT)
