"""One smtpd service of master.cf: its settings (main.cf plus that service's ``-o`` overrides).

Follows Postfix's master.cf(5) (``-o name=value`` per service) and the smtpd(8)
parameters of postconf(5); restriction lists are parsed here once, at start.
"""

from __future__ import annotations

from postier.config.settings import Config
from postier.dns.resolver import local_addresses
from postier.restrictions import evaluate as rs
from postier.restrictions.lists import RESTRICTION_LISTS
from postier.rewrite.mynetworks import MyNetworks
from postier.rewrite.resolve import Classifier, LocalRecipientCheck
from postier.smtpd.facts import ServiceFacts
from postier.smtpd.process import Worker


class Service:
    """One smtpd service of master.cf: main.cf with that service's ``-o`` overrides."""

    def __init__(self, name: str, cfg: Config, worker: Worker) -> None:
        self.name = name
        self.cfg = cfg
        self.worker = worker
        self.hostname = cfg.get("myhostname")
        self.mail_name = cfg.get("mail_name")
        self.banner = cfg.get("smtpd_banner")
        self.timeout = cfg.get_time("smtpd_timeout")
        self.message_size_limit = cfg.get_size("message_size_limit")
        self.line_length_limit = cfg.get_int("line_length_limit")
        self.helo_required = cfg.get_bool("smtpd_helo_required")
        self.hard_error_limit = cfg.get_int("smtpd_hard_error_limit")
        self.soft_error_limit = cfg.get_int("smtpd_soft_error_limit")
        self.error_sleep_time = cfg.get_time("smtpd_error_sleep_time")
        self.recipient_limit = cfg.get_int("smtpd_recipient_limit")
        self.disable_vrfy = cfg.get_bool("disable_vrfy_command")
        self.delimiter = cfg.get("recipient_delimiter")
        self.myorigin = cfg.get("myorigin")
        self.local_addrs = local_addresses()
        self.classify = Classifier.from_config(cfg, self.local_addrs)
        self.local_recipients = LocalRecipientCheck(worker.local_users, self.delimiter)
        self.mynetworks = MyNetworks.from_config(
            cfg.get_list("mynetworks"), cfg.get("mynetworks_style"), self.local_addrs
        )
        self.facts = ServiceFacts(
            self.mynetworks, self.classify, self.local_recipients, worker.domain_dns
        )
        self.lists = {
            stage: rs.parse_restrictions(cfg.get_list(param), stage=stage)
            for param, stage in RESTRICTION_LISTS
        }
        self.codes = rs.RejectCodes.from_config(cfg)
        self.reject_unlisted_recipient = cfg.get_bool("smtpd_reject_unlisted_recipient")
        self.reject_unlisted_sender = cfg.get_bool("smtpd_reject_unlisted_sender")
        keywords = ["PIPELINING"]
        keywords.append(f"SIZE {self.message_size_limit}" if self.message_size_limit else "SIZE")
        if not self.disable_vrfy:
            keywords.append("VRFY")
        keywords += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        self.ehlo_keywords = keywords
