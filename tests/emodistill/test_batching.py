"""The one batch-cutting rule: every clip once, every batch within its three limits, and the
padding bound keeping mixed lengths apart while equal lengths still share a call."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from emodistill.batching import cut_batches, grow_batch

RATE_HZ = 16_000


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 200_000), min_size=1, max_size=60),
    max_batch_size=st.integers(1, 40),
    budget=st.integers(1, 2_000_000),
    max_padding=st.sampled_from([0.0, 0.05, 0.1, 0.5, math.inf]),
)
def test_every_clip_once_and_every_batch_within_its_limits(
    lengths: list[int], max_batch_size: int, budget: int, max_padding: float
) -> None:
    batches = cut_batches(lengths, max_batch_size, budget, max_padding)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        if len(batch) == 1:
            continue  # a lone clip runs whatever its length
        sizes = [lengths[i] for i in batch]
        padded = max(sizes) * len(sizes)
        assert len(batch) <= max_batch_size
        assert padded <= budget
        assert padded <= (1 + max_padding) * sum(sizes)


@given(
    length=st.integers(1, 100_000),
    count=st.integers(1, 64),
    max_padding=st.sampled_from([0.0, 0.1, math.inf]),
)
def test_equal_lengths_fill_batches_whatever_the_padding_bound(
    length: int, count: int, max_padding: float
) -> None:
    batches = cut_batches([length] * count, 32, length * 32, max_padding)
    assert [len(b) for b in batches] == [32] * (count // 32) + ([count % 32] if count % 32 else [])


def test_mixed_lengths_are_kept_apart_by_the_padding_bound_not_by_the_budget() -> None:
    # 12 clips of 1-6 s, as the API benchmark sends them: 42 s of audio, within a 96 s budget.
    lengths = [int(s * RATE_HZ) for s in (1.0 + 5.0 * i / 11 for i in range(12))]
    budget = 96 * RATE_HZ
    unbounded = cut_batches(lengths, 32, budget, math.inf)
    assert len(unbounded) == 1  # one call padded to 6 s: 72 s of work for 42 s of audio
    bounded = cut_batches(lengths, 32, budget, 0.1)
    assert len(bounded) > 1
    padded = sum(max(lengths[i] for i in b) * len(b) for b in bounded)
    assert padded <= 1.1 * sum(lengths)


def test_the_anchor_always_joins_and_nearest_lengths_first() -> None:
    sorted_lengths = [100, 200, 1000, 1050, 1100, 5000]
    lo, hi = grow_batch(sorted_lengths, 3, 32, 10**9, 0.1)
    assert (lo, hi) == (2, 4)  # 1000-1100: within 10 %; 200 and 5000 are not
    assert grow_batch(sorted_lengths, 5, 32, 10**9, 0.0) == (5, 5)
