"""The one rule that cuts clips into model calls, for every front end.

Clips of similar length share a call, so little compute goes to padding; a call holds at most
`max_batch_size` clips and at most `max_batch_samples` of padded audio (longest × count), as
text-embeddings-inference budgets tokens, and adds at most `max_padding` of padding (a fraction
of its clips' own audio). The padding bound is what keeps mixed lengths apart: within the
budget alone, 12 clips of 1-6 s made one call padded to 6 s each, 72 s of work for 42 s of
audio, and on the CPU, where HuBERT-base's cost per audio-second hardly falls with the batch,
the Python API scored them at 0.6× the rate of one call per clip (issue 26, its fifth round).
The rule grows a batch around an anchor clip, the oldest waiting (no clip starves): the service's
batcher and the offline runner both anchor so, so an idle service that batches by length cuts
one request's spans into the very calls the Python API makes, and answers it to the last bit
as the API does. (The service batches in arrival order instead where a call costs its padded
audio, batch or not: service/model.py's resolve_autos; the same rule, over the queue unsorted.)
A single clip longer than the budget still runs, alone. Knows nothing of models or time.
"""

from __future__ import annotations

from collections.abc import Sequence


def grow_batch(
    sorted_lengths: Sequence[int],
    anchor: int,
    max_batch_size: int,
    max_batch_samples: int,
    max_padding: float,
) -> tuple[int, int]:
    """The batch around `sorted_lengths[anchor]`: (lo, hi), inclusive indices into the sorted
    lengths. Neighbours join one at a time, the one nearer in length to the anchor first,
    while the batch stays within the three limits: clips, padded samples, and padded samples
    at most (1 + max_padding) × the clips' own samples."""
    lo = hi = anchor
    target = sorted_lengths[anchor]
    longest = total = target
    while hi - lo + 1 < max_batch_size:
        options = [i for i in (lo - 1, hi + 1) if 0 <= i < len(sorted_lengths)]
        options.sort(key=lambda i: abs(sorted_lengths[i] - target))
        for i in options:
            grown = max(longest, sorted_lengths[i])
            padded = grown * (hi - lo + 2)
            own = total + sorted_lengths[i]
            if padded <= max_batch_samples and padded <= (1 + max_padding) * own:
                lo, hi, longest, total = min(lo, i), max(hi, i), grown, own
                break
        else:
            break
    return lo, hi


def cut_batches(
    lengths: Sequence[int], max_batch_size: int, max_batch_samples: int, max_padding: float
) -> list[list[int]]:
    """Every clip (by its length, in arrival order) in a batch: lists of indices into
    `lengths`, each batch grown by `grow_batch` around the first clip left, as the service's
    batcher cuts a queue that holds them all."""
    left = sorted(range(len(lengths)), key=lambda i: lengths[i])  # stable: arrival order
    limits = (max_batch_size, max_batch_samples, max_padding)
    batches: list[list[int]] = []
    while left:
        anchor = left.index(min(left))
        lo, hi = grow_batch([lengths[i] for i in left], anchor, *limits)
        batches.append(left[lo : hi + 1])
        del left[lo : hi + 1]
    return batches
