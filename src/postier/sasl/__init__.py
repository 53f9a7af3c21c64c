"""SASL for the SMTP server (library): the authentication servers smtpd asks, and their mechanisms.

Follows Postfix's SASL_README and xsasl(3) split: ``dovecot`` speaks Dovecot's
authentication protocol (smtpd_sasl_type = dovecot), ``cyrus`` checks PLAIN and LOGIN
through Cyrus's ``saslauthd`` (smtpd_sasl_type = cyrus, ``cyrusconf`` reads its
``smtpd.conf``); ``mechanisms`` filters what is offered by
``smtpd_sasl_security_options``; ``api`` is the interface both back ends give smtpd.
"""
