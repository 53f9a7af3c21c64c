"""The client side of the anvil service (library): its request protocol and smtpd's client.

Postfix's ``src/global/anvil_clnt.c`` and anvil(8): the anvil program
(``postier.anvil``) and every smtpd worker both import this package, never each other.
"""
