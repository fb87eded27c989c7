"""Batching for the student: rank equivalence, determinism, length grouping, crops."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import write_tone
from training.data import BucketedBatchSampler, Clip, ClipDataset, eval_batches

LENGTHS = [0.5 + (i * 7 % 23) * 0.3 for i in range(70)]


def micro_batches(world: int, accum: int, rank: int, epoch: int = 0, **kw) -> list[list[int]]:
    sampler = BucketedBatchSampler(LENGTHS, 4, accum, world, rank, seed=3, **kw)
    sampler.epoch = epoch
    return list(sampler)


def test_ranks_together_see_what_one_process_sees():
    one = micro_batches(world=1, accum=2, rank=0)
    rank0, rank1 = micro_batches(2, 1, 0), micro_batches(2, 1, 1)
    assert len(one) == 2 * len(rank0) == 2 * len(rank1) == 2 * (70 // 8)
    assert one[0::2] == rank0 and one[1::2] == rank1


def test_epochs_are_deterministic_distinct_and_drop_the_remainder():
    first = micro_batches(1, 2, 0, epoch=0)
    assert first == micro_batches(1, 2, 0, epoch=0)
    assert first != micro_batches(1, 2, 0, epoch=1)
    flat = [i for b in first for i in b]
    assert len(flat) == len(set(flat)) == 64 and all(len(b) == 4 for b in first)


def test_resume_skips_finished_global_batches():
    sampler = BucketedBatchSampler(LENGTHS, 4, 2, seed=3)
    full = list(sampler)
    sampler.skip_steps = 3
    assert list(sampler) == full[6:] and len(sampler) == len(full) - 6


def test_bucketing_cuts_padding():
    def padded_s(bucket_batches: int) -> float:
        batches = micro_batches(1, 2, 0, bucket_batches=bucket_batches)
        return sum(max(LENGTHS[i] for i in b) * len(b) for b in batches)

    # 8 global batches per sorted window pad far less than sorting one batch at a time.
    assert padded_s(8) < 0.8 * padded_s(1)


def test_too_few_clips_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot fill one global batch of 128"):
        BucketedBatchSampler([1.0] * 10, 8, 16)


def test_eval_batches_keep_the_padded_budget():
    batches = eval_batches(LENGTHS, max_batch_audio_s=20.0)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    for b in batches:
        assert len(b) == 1 or max(LENGTHS[i] for i in b) * len(b) <= 20.0


def test_crops_depend_on_seed_epoch_and_clip_only(tmp_path):
    wav = write_tone(tmp_path / "a.wav", seconds=2.0)
    clip = Clip("a", str(wav), 0, 2.0)
    data = ClipDataset([clip, clip], max_samples=8000, seed=1)
    a0, b0 = data[0][1], data[1][1]
    data.epoch = 1
    a1 = data[0][1]
    assert len(a0) == 8000
    assert np.array_equal(a0, ClipDataset([clip], max_samples=8000, seed=1)[0][1])
    assert not np.array_equal(a0, b0) or not np.array_equal(a0, a1)
    assert len(ClipDataset([clip])[0][1]) == 32000  # no crop outside training
