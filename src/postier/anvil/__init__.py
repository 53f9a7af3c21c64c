"""The anvil process (program): connection counts and event rates per (service, client),
shared by every smtpd worker, as Postfix's anvil(8).
"""
