"""The SMTP server (program): the smtpd worker process, its sessions and what they decide."""
