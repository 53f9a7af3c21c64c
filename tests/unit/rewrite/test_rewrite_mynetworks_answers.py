"""mynetworks answers kept per client: the same answer as a fresh walk, none kept when a
table could change it."""

from __future__ import annotations

from postier.rewrite.mynetworks import MyNetworks


class _Networks:
    """A table whose contents the test changes between lookups."""

    spec = "inline:{test}"
    pattern = True
    blocking = False

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def lookup(self, key: str) -> str | None:
        return "OK" if key in self.keys else None


def test_repeated_lookups_give_the_first_answer() -> None:
    nets = MyNetworks.parse(["!127.0.0.2", "127.0.0.0/8", "[::1]/128"])
    for _ in range(3):
        assert nets.match("127.0.0.1")
        assert not nets.match("127.0.0.2")
        assert nets.match("::ffff:127.0.0.9")
        assert not nets.match("192.0.2.1")
        assert nets.lookup("garbage") is False


def test_bad_entry_answer_is_still_none_when_asked_again() -> None:
    nets = MyNetworks.parse(["10.0.0.0/8", "nonsense/99"], strict=False)
    assert nets.lookup("10.1.2.3") is True
    for _ in range(2):
        assert nets.lookup("192.0.2.1") is None


def test_a_table_entry_is_asked_every_time() -> None:
    table = _Networks()
    nets = MyNetworks.parse(["10.0.0.0/8", "inline:{test}"], open_table=lambda _spec: table)
    assert not nets.match("192.0.2.1")
    table.keys.add("192.0.2.1")
    assert nets.match("192.0.2.1")
    table.keys.clear()
    assert not nets.match("192.0.2.1")
