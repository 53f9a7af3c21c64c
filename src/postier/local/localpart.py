"""Address-extension splitting and the mailbox_command environment, as pure functions.

Follows Postfix local(8) ("ADDRESS EXTENSION", "EXTERNAL COMMAND DELIVERY") and
postconf(5) ``recipient_delimiter``, ``owner_request_special``, ``mailbox_command``,
``command_expansion_filter``, ``import_environment``, ``export_environment``,
``command_execution_directory``.

About ``mailbox_command`` and ``$name``: postconf(5) says "Unlike other Postfix
configuration parameters, the mailbox_command parameter is not subjected to $name
substitutions. This is to make it easier to specify shell syntax". So Postfix does
NOT expand ``$EXTENSION`` etc. itself: it exports them as environment variables
(each value censored by ``command_expansion_filter``, every other character becoming
``_``) and the shell expands ``"$EXTENSION"`` when it runs the command.
``expand_command`` therefore returns the command unchanged; it exists so that
callers have one obvious place that documents this. ``local_expand`` implements
the lower-case ``$user``/``$home``/... interpolation that Postfix does apply to
``forward_path``, ``command_execution_directory`` and ``luser_relay``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

from postier.config.params import COMMAND_EXPANSION_FILTER, EXPORT_ENVIRONMENT

#: postconf -d command_expansion_filter (also forward_expansion_filter).
DEFAULT_EXPANSION_FILTER = COMMAND_EXPANSION_FILTER.default_value()
#: postconf -d export_environment.
DEFAULT_EXPORT_ENVIRONMENT = tuple(EXPORT_ENVIRONMENT.default_value())
#: _PATH_DEFPATH on Linux: the PATH that Postfix gives to external commands.
DEFAULT_COMMAND_PATH = "/usr/bin:/bin"

#: The queue-file attributes that feed CLIENT_* and SASL_*, each environment name with
#: the attribute names that carry it, the first present winning: the forwarded
#: (XFORWARD, Postfix's ``log_*``) client first, then the session's own, then the
#: names ``command_env`` reads.
CLIENT_ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("client_hostname", ("log_client_name", "client_name", "client_hostname")),
    ("client_address", ("log_client_address", "client_address")),
    ("client_helo", ("log_helo_name", "helo_name", "client_helo")),
    ("client_protocol", ("log_protocol_name", "protocol", "protocol_name", "client_protocol")),
    ("sasl_method", ("sasl_method",)),
    ("sasl_username", ("sasl_username",)),
    ("sasl_sender", ("sasl_sender",)),
    ("envid", ("envid", "dsn_envid")),
)


def client_attributes(queue_attrs: Mapping[str, str]) -> dict[str, str]:
    """``command_env``'s ``attrs`` from a queue file's named attributes (``{name: value}``):
    ``client_hostname``, ``client_address``, ``client_helo``, ``client_protocol``,
    ``sasl_*`` and ``envid``, each only when present and non-empty."""
    out: dict[str, str] = {}
    for name, sources in CLIENT_ATTRIBUTES:
        value = next((queue_attrs[s] for s in sources if queue_attrs.get(s)), "")
        if value:
            out[name] = value
    return out


def imported_environment(
    import_environment: Sequence[str], environ: Mapping[str, str], config_directory: str
) -> dict[str, str]:
    """The environment a Postfix daemon runs with (postconf(5) import_environment):
    each ``NAME`` copied from ``environ`` when set there, each ``NAME=value`` set, and
    MAIL_CONFIG the configuration directory (postfix(1) exports it to master)."""
    env: dict[str, str] = {}
    for entry in import_environment:
        name, eq, value = entry.partition("=")
        if eq:
            env[name] = value
        elif name == "MAIL_CONFIG":
            env[name] = config_directory
        elif name in environ:
            env[name] = environ[name]
    return env


def censor(value: str, allowed: str = DEFAULT_EXPANSION_FILTER) -> str:
    """Replace every character not in ``allowed`` by ``_`` (command_expansion_filter)."""
    chars = _char_set(allowed)
    if chars.issuperset(value):
        return value  # the usual case: nothing to replace
    return "".join(c if c in chars else "_" for c in value)


@functools.lru_cache(maxsize=16)
def _char_set(allowed: str) -> frozenset[str]:
    """The characters of an expansion filter, as a set (the filters are few)."""
    return frozenset(allowed)


def split_address(address: str) -> tuple[str, str | None]:
    """Localpart and domain: the text left and right of the rightmost ``@``."""
    at = address.rfind("@")
    if at < 0:
        return address, None
    return address[:at], address[at + 1 :]


def command_env(
    *,
    user: str,
    home: str | None,
    shell: str | None,
    recipient: str,
    sender: str,
    orig_recipient: str = "",
    extension: str | None = None,
    domain: str | None = None,
    local: str | None = None,
    original_recipient: str = "",
    attrs: Mapping[str, str] | None = None,
    client_address: str = "",
    client_hostname: str = "",
    client_helo: str = "",
    client_protocol: str = "",
    sasl_method: str = "",
    sasl_sender: str = "",
    sasl_username: str = "",
    envid: str = "",
    export_environment: Sequence[str] = DEFAULT_EXPORT_ENVIRONMENT,
    parent_env: Mapping[str, str] | None = None,
    expansion_filter: str = DEFAULT_EXPANSION_FILTER,
    path: str = DEFAULT_COMMAND_PATH,
) -> dict[str, str]:
    """The complete environment Postfix local(8) gives to ``mailbox_command``.

    ``user`` is the bare recipient name (USER and LOGNAME); LOCAL and DOMAIN
    come from ``recipient`` (rightmost ``@``) unless ``local``/``domain`` are
    given. ``original_recipient`` is a synonym of ``orig_recipient``. ``attrs``
    may carry the client/SASL attributes of the request under Postfix's names
    (``client_address``, ``client_hostname``, ``client_helo``,
    ``client_protocol``, ``sasl_method``, ``sasl_sender``, ``sasl_username``,
    ``envid``) or under the environment names (``CLIENT_ADDRESS``, ...); the
    keyword arguments of the same name win when non-empty. Optional variables (SHELL, HOME,
    DOMAIN, EXTENSION, ORIGINAL_RECIPIENT, ENVID, CLIENT_*, SASL_*) are present
    only when known and non-empty (EXTENSION also when empty but present, as
    for ``user+``). Every message-context value is censored with
    ``expansion_filter``. PATH is always ``path``. Each ``export_environment``
    entry is ``NAME`` (copied from ``parent_env`` when set there) or
    ``NAME=value`` (set to value); those are not censored.
    """
    rcpt_local, rcpt_domain = split_address(recipient)
    local = rcpt_local if local is None else local
    domain = rcpt_domain if domain is None else domain
    orig_recipient = orig_recipient or original_recipient
    extra = attrs if attrs is not None else {}

    def attr(name: str, given: str) -> str:
        return given or extra.get(name, "") or extra.get(name.upper(), "")

    context: dict[str, str] = {}
    if home:
        context["HOME"] = home
    context["LOGNAME"] = user
    context["USER"] = user
    context["SENDER"] = sender
    context["RECIPIENT"] = recipient
    context["LOCAL"] = local
    if shell:
        context["SHELL"] = shell
    if domain:
        context["DOMAIN"] = domain
    if extension is not None:
        context["EXTENSION"] = extension
    optional = {
        "ORIGINAL_RECIPIENT": orig_recipient,
        "ENVID": attr("envid", envid),
        "CLIENT_HOSTNAME": attr("client_hostname", client_hostname),
        "CLIENT_ADDRESS": attr("client_address", client_address),
        "CLIENT_HELO": attr("client_helo", client_helo),
        "CLIENT_PROTOCOL": attr("client_protocol", client_protocol),
        "SASL_METHOD": attr("sasl_method", sasl_method),
        "SASL_SENDER": attr("sasl_sender", sasl_sender),
        "SASL_USERNAME": attr("sasl_username", sasl_username),
    }
    context.update({name: value for name, value in optional.items() if value})
    env = {name: censor(value, expansion_filter) for name, value in context.items()}
    env["PATH"] = path
    parent = parent_env if parent_env is not None else {}
    for entry in export_environment:
        name, eq, value = entry.partition("=")
        if eq:
            env[name] = value
        elif name in parent:
            env[name] = parent[name]
    return env


def expand_command(template: str, attrs: Mapping[str, str]) -> str:
    """Return ``template`` unchanged: mailbox_command is not $name-expanded.

    postconf(5): "the mailbox_command parameter is not subjected to $name
    substitutions". ``$EXTENSION`` and friends reach the command through the
    environment built by ``command_env`` and are expanded by /bin/sh, which
    never re-parses an expanded ``"$VAR"`` as shell syntax. ``attrs`` is
    accepted and ignored so that callers need not special-case this.
    """
    del attrs
    return template


_MACRO = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z0-9_]+)(?:(?P<op>[?:])(?P<value>[^}]*))?\}"
    r"|\((?P<paren>[A-Za-z0-9_]+)\)|(?P<bare>[A-Za-z0-9_]+)|(?P<dollar>\$))"
)


class ExpansionError(ValueError):
    """A ``$`` that does not start a valid macro (Postfix: "bad parameter value syntax")."""


def local_expand(
    template: str, attrs: Mapping[str, str | None], expansion_filter: str | None = None
) -> str:
    """Interpolate ``$name``, ``${name}``, ``$(name)``, ``${name?value}``, ``${name:value}``.

    This is the expansion Postfix applies to forward_path,
    command_execution_directory and luser_relay (attribute names ``user``,
    ``home``, ``shell``, ``recipient``, ``extension``, ``domain``, ``local``,
    ``recipient_delimiter``). ``${name?value}`` gives ``value`` when ``name`` is
    defined and non-empty, ``${name:value}`` when it is not; an unknown or
    ``None`` attribute is undefined and expands to nothing. Values of
    attributes (not the template text) are censored with ``expansion_filter``
    when one is given. ``$$`` gives ``$``.
    """
    out: list[str] = []
    pos = 0
    while True:
        dollar = template.find("$", pos)
        if dollar < 0:
            out.append(template[pos:])
            return "".join(out)
        out.append(template[pos:dollar])
        match = _MACRO.match(template, dollar)
        if match is None:
            raise ExpansionError(f"bad macro syntax at offset {dollar} in {template!r}")
        pos = match.end()
        if match.group("dollar"):
            out.append("$")
            continue
        name = match.group("braced") or match.group("paren") or match.group("bare")
        value = attrs.get(name)
        op = match.group("op")
        if op == "?":
            if value:
                out.append(local_expand(match.group("value"), attrs, expansion_filter))
        elif op == ":":
            if not value:
                out.append(local_expand(match.group("value"), attrs, expansion_filter))
        elif value:
            out.append(censor(value, expansion_filter) if expansion_filter else value)
