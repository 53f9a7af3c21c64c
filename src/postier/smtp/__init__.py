"""The SMTP and LMTP client: qmgr's ``smtp``, ``relay`` and ``lmtp`` transports (library).

Follows Postfix's smtp(8)/lmtp(8): next-hop resolution (``nexthop``), one session's
dialogue over the sans-IO ``smtpproto.client`` core (``session``), and the transport
that ties them to a delivery request and logs each recipient's status (``transport``).
"""
