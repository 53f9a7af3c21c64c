"""The SMTP protocol core (library, pure, sans-IO) and the one home of SMTP reply texts.

Follows RFC 5321 and Postfix smtpd(8): ``server.ServerConnection`` turns bytes into
``events``; ``replies`` holds every reply code and text postier sends.
"""
