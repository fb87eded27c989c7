"""The one rule that cuts clips into model calls, for every front end.

Clips of similar length share a call, so little compute goes to padding; a call holds at most
`max_batch_size` clips and at most `max_batch_samples` of padded audio (longest × count), as
text-embeddings-inference budgets tokens. The rule grows a batch around an anchor clip: the
service's batcher anchors on the oldest waiting clip (no clip starves), the offline runner on
the shortest left (which, over a length-sorted list, is a greedy cut from the short end).
A single clip longer than the budget still runs, alone. Knows nothing of models or time.
"""

from __future__ import annotations

from collections.abc import Sequence


def grow_batch(
    sorted_lengths: Sequence[int], anchor: int, max_batch_size: int, max_batch_samples: int
) -> tuple[int, int]:
    """The batch around `sorted_lengths[anchor]`: (lo, hi), inclusive indices into the sorted
    lengths. Neighbours join one at a time, the one nearer in length to the anchor first,
    while the batch stays within both limits."""
    lo = hi = anchor
    target = sorted_lengths[anchor]
    longest = target
    while hi - lo + 1 < max_batch_size:
        options = [i for i in (lo - 1, hi + 1) if 0 <= i < len(sorted_lengths)]
        options.sort(key=lambda i: abs(sorted_lengths[i] - target))
        for i in options:
            grown = max(longest, sorted_lengths[i])
            if grown * (hi - lo + 2) <= max_batch_samples:
                lo, hi, longest = min(lo, i), max(hi, i), grown
                break
        else:
            break
    return lo, hi


def cut_batches(
    lengths: Sequence[int], max_batch_size: int, max_batch_samples: int
) -> list[list[int]]:
    """Every clip (by its length) in a batch: lists of indices into `lengths`, each batch
    grown by `grow_batch` from the shortest clip left."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_lengths = [lengths[i] for i in order]
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        _, hi = grow_batch(sorted_lengths[start:], 0, max_batch_size, max_batch_samples)
        batches.append(order[start : start + hi + 1])
        start += hi + 1
    return batches
