"""TLS for the SMTP server (library): policy from main.cf/-o parameters, contexts, session facts.

``policy`` is pure (parameters in, decisions and texts out); ``context`` reads the
certificate and key files and builds ``ssl.SSLContext`` objects, before the privilege
drop. Follows Postfix's TLS_README and postconf(5) ``smtpd_tls_*``.
"""
