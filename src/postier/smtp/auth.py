"""The SMTP client's SASL login (pure): password lookup keys, mechanism choice, responses.

Follows Postfix smtp(8) and SASL_README ("Enabling SASL authentication in the Postfix
SMTP client"): ``smtp_sasl_password_maps`` is searched with the remote host name, then
the next-hop destination as written in relayhost or the transport (``[smtp.fai.com]:587``,
smtp_sasl_glue.c's order); the value is ``username:password``.
``smtp_sasl_security_options`` (without TLS) and ``smtp_sasl_tls_security_options``
(over TLS): ``noplaintext`` excludes PLAIN and LOGIN, ``noanonymous`` ANONYMOUS.
Mechanisms: PLAIN (RFC 4616, as the initial response of RFC 4954) and LOGIN
(draft-murchison-sasl-login: ``Username:`` then ``Password:`` challenges).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from postier.tables import Key

#: The mechanisms postier's client speaks, best first.
MECHANISMS = ("PLAIN", "LOGIN")
_PLAINTEXT = frozenset({"PLAIN", "LOGIN"})


@dataclass(frozen=True)
class Credentials:
    """A ``username:password`` value from smtp_sasl_password_maps (the password may
    hold colons; a value without one has an empty password)."""

    username: str
    password: str

    @classmethod
    def parse(cls, value: str) -> Credentials:
        user, _, password = value.partition(":")
        return cls(user, password)


def password_keys(hostname: str, dest: str) -> list[Key]:
    """The lookup keys in Postfix's order: the server's host name, then the next hop
    as written (both once; lower case is the tables' job)."""
    keys = [Key(hostname)]
    if dest and dest != hostname:
        keys.append(Key(dest))
    return keys


def choose_mechanism(offered: str, options: tuple[str, ...]) -> str | None:
    """The mechanism to use from the server's ``AUTH`` keyword value (``PLAIN LOGIN``)
    under the security ``options``; None when none is acceptable."""
    server = {m.upper() for m in offered.split()}
    allowed = [m for m in MECHANISMS if m in server]
    if "noplaintext" in options:
        allowed = [m for m in allowed if m not in _PLAINTEXT]
    return allowed[0] if allowed else None


def initial_response(mechanism: str, creds: Credentials) -> str | None:
    """The RFC 4954 initial response sent with ``AUTH`` (PLAIN), None for LOGIN."""
    if mechanism == "PLAIN":
        raw = f"\0{creds.username}\0{creds.password}".encode()
        return base64.b64encode(raw).decode("ascii")
    return None


def respond(mechanism: str, challenge: str, creds: Credentials) -> str:
    """The answer to a ``334`` challenge (base64 text after the code). LOGIN: the user
    name to a ``Username:`` prompt, the password otherwise; PLAIN after an empty
    challenge: the credentials."""
    if mechanism == "PLAIN":
        return initial_response("PLAIN", creds) or ""
    try:
        prompt = base64.b64decode(challenge.strip(), validate=False).decode("utf-8", "replace")
    except ValueError:
        prompt = ""
    value = creds.username if prompt.lower().startswith("user") else creds.password
    return base64.b64encode(value.encode()).decode("ascii")
