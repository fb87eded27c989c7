"""The prosodic ResNet: shapes, mask downsampling, and invariance to batch padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.teachers.prosodic import ProsodicResNet, batch_llds, downsample_mask

CHANNELS = (4, 8, 8, 16)


def _model_with_nontrivial_bn(seed: int = 0) -> ProsodicResNet:
    """Eval-mode model whose BatchNorms map 0 to non-zero values, as a trained one does.

    Fresh BN layers (mean 0, var 1, bias 0) keep zeros at zero and would hide padding leaks.
    """
    torch.manual_seed(seed)
    model = ProsodicResNet(n_classes=4, channels=CHANNELS)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1.0, 1.0)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-1.0, 1.0)
    return model.eval()


def test_shapes():
    model = ProsodicResNet(n_classes=4, channels=CHANNELS).eval()
    logits, embedding = model(torch.randn(3, 1, 25, 50), torch.ones(3, 50, dtype=torch.bool))
    assert logits.shape == (3, 4) and embedding.shape == (3, CHANNELS[-1])
    with pytest.raises(ValueError, match=r"\[B, 1, 25, T\]"):
        model(torch.randn(3, 25, 50))


@pytest.mark.parametrize("frames", range(1, 10))
def test_mask_downsampling_matches_the_strided_convolutions(frames: int):
    conv3 = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1)
    conv1 = torch.nn.Conv2d(1, 1, 1, stride=2)
    mask = torch.ones(1, frames, dtype=torch.bool)
    out_frames = downsample_mask(mask, 2).shape[1]
    x = torch.zeros(1, 1, 25, frames)
    assert out_frames == conv3(x).shape[-1] == conv1(x).shape[-1] == -(-frames // 2)


def test_batch_llds_pads_at_the_end():
    mats = [np.full((3, 25), 1.0, np.float32), np.full((5, 25), 2.0, np.float32)]
    lld, mask = batch_llds(mats)
    assert lld.shape == (2, 1, 25, 5) and mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert lld[0, 0, :, :3].eq(1.0).all() and lld[0, 0, :, 3:].eq(0.0).all()
    assert lld[1].eq(2.0).all()


@pytest.mark.parametrize("frames", [1, 2, 8, 37, 64])
def test_outputs_do_not_depend_on_batch_padding(frames: int):
    """A clip alone vs the same clip padded to 3x its length among longer clips (eval mode)."""
    model = _model_with_nontrivial_bn()
    gen = torch.Generator().manual_seed(frames)
    clip = torch.randn(1, 1, 25, frames, generator=gen)
    alone_logits, alone_emb = model(clip, torch.ones(1, frames, dtype=torch.bool))

    long = 3 * frames
    batch = torch.randn(3, 1, 25, long, generator=gen) * 5.0  # garbage where the clip is padded
    batch[1, :, :, :frames] = clip[0]
    mask = torch.ones(3, long, dtype=torch.bool)
    mask[1, frames:] = False
    logits, emb = model(batch, mask)

    # Achieved ≤ 2.4e-7 (float32 rounding of differently sized convolutions); bound 1e-5.
    assert (logits[1] - alone_logits[0]).abs().max().item() <= 1e-5
    assert (emb[1] - alone_emb[0]).abs().max().item() <= 1e-5
    # Not vacuous: reading the padding as valid frames changes the answer a lot.
    naive_logits, _ = model(batch, torch.ones(3, long, dtype=torch.bool))
    assert (naive_logits[1] - alone_logits[0]).abs().max().item() > 1e-2


def test_missing_mask_means_every_frame_is_valid():
    model = _model_with_nontrivial_bn()
    x = torch.randn(2, 1, 25, 20)
    a = model(x)[0]
    b = model(x, torch.ones(2, 20, dtype=torch.bool))[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
