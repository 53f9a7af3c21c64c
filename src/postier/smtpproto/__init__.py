"""The SMTP protocol cores (library, pure, sans-IO) for both directions, and the one home
of SMTP reply texts.

Follows RFC 5321 and Postfix smtpd(8) / smtp(8): ``server.ServerConnection`` and
``client.ClientConnection`` turn bytes into ``events`` and events into bytes; they share
``buffer`` (the bounded line buffer), ``readers`` and ``writers`` (the wire in each
direction); ``replies`` holds every reply code and text postier sends.
"""
