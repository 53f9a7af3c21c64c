"""Queue IDs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postier.queue.ids import (
    is_long_queue_id,
    is_queue_id,
    new_long_queue_id,
    new_queue_id,
    usec_of,
)


def test_postfix_form() -> None:
    assert new_queue_id(0x2A8871, 1764103732_000000 + 0x22D2 * 1) .startswith("022D2")
    assert new_queue_id(0x8871, 0x22D2A) == "22D2A8871"
    assert new_queue_id(1, 999_999) == "F423F1"


@given(st.integers(1, 2**40), st.integers(0, 2**62))
def test_valid_and_inode_recoverable(inode: int, now_us: int) -> None:
    qid = new_queue_id(inode, now_us)
    assert is_queue_id(qid)
    assert int(qid[5:], 16) == inode
    assert int(qid[:5], 16) == now_us % 1_000_000


@given(st.integers(1, 2**32), st.integers(1, 2**32), st.integers(0, 999_999))
def test_distinct_inodes_distinct_ids(a: int, b: int, us: int) -> None:
    if a != b:
        assert new_queue_id(a, us) != new_queue_id(b, us)


def test_is_queue_id_rejects() -> None:
    for bad in ["", "abc", ".tmp-1-2", "22d2a8871", "22D2A8871/..", "XYZXYZ"]:
        assert not is_queue_id(bad)


@given(st.integers(1, 2**40), st.integers(0, 2**55))
def test_long_ids_valid_and_usec_recoverable(inode: int, now_us: int) -> None:
    qid = new_long_queue_id(inode, now_us)
    assert is_long_queue_id(qid) and is_queue_id(qid)
    assert qid[10] == "z" and "z" not in qid[11:]
    assert not any(v in qid for v in "aeiouAEIOU")
    assert usec_of(qid) == now_us % 1_000_000


@given(st.integers(1, 2**32), st.integers(1, 2**32), st.integers(0, 2**50))
def test_long_ids_distinct_inodes(a: int, b: int, now_us: int) -> None:
    if a != b:
        assert new_long_queue_id(a, now_us) != new_long_queue_id(b, now_us)


def test_long_ids_sort_by_time_within_the_encoded_range() -> None:
    t = 1_764_103_732_000_000
    ids = [new_long_queue_id(12345, t + k * 700_001) for k in range(50)]
    assert ids == sorted(ids)


def test_usec_of_short_and_garbage() -> None:
    assert usec_of("22D2A8871") == 0x22D2A
    assert usec_of(".tmp-1-2") is None
