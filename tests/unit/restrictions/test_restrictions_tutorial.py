"""The tutorial's main.cf, read by postier.config, drives the evaluator end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from restrictions_helpers import World

from postier.config.settings import Config
from postier.restrictions import evaluate as rs
from postier.restrictions.lists import RESTRICTION_LISTS
from postier.rewrite.mynetworks import MyNetworks

TUTORIAL = Path(__file__).parents[2] / "data" / "tutorial"
LISTS = {stage: param.name for param, stage in RESTRICTION_LISTS}


@pytest.fixture(scope="module")
def cfg() -> Config:
    return Config.from_dir(str(TUTORIAL))


def test_tutorial_lists_parse_and_guard_relaying(cfg: Config) -> None:
    parsed = {stage: rs.parse_restrictions(cfg.get_list(p), stage=stage)
              for stage, p in LISTS.items()}
    assert rs.RestrictionCall("sleep", "1") in parsed[rs.Stage.CLIENT]
    assert [c.name for c in parsed[rs.Stage.RELAY]] == [
        "permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"]
    rs.check_relay_protection(parsed[rs.Stage.RELAY], parsed[rs.Stage.RECIPIENT])
    codes = rs.RejectCodes.from_config(cfg)
    assert codes == rs.RejectCodes()


def test_tutorial_world_from_its_main_cf(cfg: Config) -> None:
    world = World(networks=cfg.get_list("mynetworks"),
                  mydestination=cfg.get_list("mydestination"))
    assert MyNetworks.from_config(world.networks, cfg.get("mynetworks_style"), []).match("::1")
    parsed = {stage: rs.parse_restrictions(cfg.get_list(p), stage=stage)
              for stage, p in LISTS.items()}
    state = rs.SmtpdState(client_address="203.0.113.5", helo_name="mail.example.net",
                          sender="someone@example.net", recipient="alice@tintin.example.com")
    d = rs.evaluate_stage(parsed, state, world, rs.RejectCodes.from_config(cfg),
                          reject_unlisted_recipient=cfg.get_bool("smtpd_reject_unlisted_recipient"),
                          reject_unlisted_sender=cfg.get_bool("smtpd_reject_unlisted_sender"))
    assert d.accepted and d.sleeps == [1.0]
    relay = rs.evaluate_stage(parsed, replace(state, recipient="x@example.org"),
                              world, rs.RejectCodes())
    assert str(relay.reply) == "454 4.7.1 <x@example.org>: Relay access denied"
