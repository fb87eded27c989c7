"""The prosodic teacher f_T^P: a 4-stage ResNet2D over the eGeMAPS low-level descriptors.

The LLD matrix of one clip is read as a one-channel image [1, 25, T] (25 descriptors by
10 ms frames). Clips are batched with zero padding at the end of time, and the network is built
so that, in eval mode, a clip's outputs do not depend on that padding: padded frames are set to
zero before every convolution (so a convolution near the clip's end sees exactly the zeros it
would see for the clip alone) and pooling averages over valid frames only. In training mode
BatchNorm's batch statistics still count the zeroed padded frames; training crops to a fixed
window keep that small, and eval (running statistics) is exact. This module knows
nothing of labels, training, feature extraction or standardisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..features import EGEMAPS_LLD_COUNT


def downsample_mask(frame_mask: torch.Tensor, stride: int) -> torch.Tensor:
    """[B, T] -> [B, ceil(T / stride)]: a strided output frame is valid when its centre is.

    A 3x3 convolution with padding 1 and stride s (and the 1x1 shortcut with stride s) gives
    output frame j centred on input frame s·j, and ceil(T / s) output frames: the same count.
    """
    return frame_mask[:, ::stride]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU; padded frames re-zeroed."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, F, T] zero at padded frames; valid [B, 1, 1, T'] at the output rate."""
        # BN maps 0 to a non-zero shift, so the padded frames are zeroed again before conv2.
        h = F.relu(self.bn1(self.conv1(x))) * valid
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x)) * valid


class ProsodicResNet(nn.Module):
    """LLD image [B, 1, 25, T] -> (logits [B, n_classes], z_P [B, channels[-1]]); with
    `dimensions`, `dimensions_of(z_P)` -> arousal, valence, dominance [B, 3] in (0, 1)."""

    def __init__(
        self,
        n_classes: int,
        channels: Sequence[int] = (32, 64, 128, 128),
        n_features: int = EGEMAPS_LLD_COUNT,
        dimensions: bool = False,
    ):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"ProsodicResNet has 4 stages, got channels={tuple(channels)}")
        self.n_classes = n_classes
        self.n_features = n_features
        self.embedding_dim = channels[-1]
        self.stem = nn.Conv2d(1, channels[0], 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(channels[0])
        widths = [channels[0], *channels]
        # Stride 2 (in both descriptors and time) from the second stage on: 25 -> 13 -> 7 -> 4.
        self.strides = (1, 2, 2, 2)
        self.stages = nn.ModuleList(
            BasicBlock(widths[i], widths[i + 1], stride) for i, stride in enumerate(self.strides)
        )
        self.head = nn.Linear(channels[-1], n_classes)
        self.dimension_head = nn.Linear(channels[-1], 3) if dimensions else None

    def dimensions_of(self, embedding: torch.Tensor) -> torch.Tensor:
        """z_P [B, C] -> [B, 3] in (0, 1) (DIMENSION_NAMES' order), beside the logits."""
        if self.dimension_head is None:
            raise ValueError("this teacher was built without a dimensional head")
        return torch.sigmoid(self.dimension_head(embedding))

    def forward(
        self, lld: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """lld [B, 1, 25, T]; frame_mask [B, T] bool, True = valid frame (padding at the end).

        Returns logits [B, C] and the embedding z_P [B, channels[-1]]: the mean over the
        descriptor axis, then the mean over valid time frames only.
        """
        if lld.ndim != 4 or lld.shape[1] != 1 or lld.shape[2] != self.n_features:
            raise ValueError(f"expected LLDs [B, 1, {self.n_features}, T], got {list(lld.shape)}")
        if frame_mask is None:
            frame_mask = torch.ones(lld.shape[0], lld.shape[-1], dtype=torch.bool)
        frame_mask = frame_mask.to(lld.device)
        valid = frame_mask[:, None, None, :].to(lld.dtype)
        x = F.relu(self.stem_bn(self.stem(lld * valid))) * valid
        for block, stride in zip(self.stages, self.strides, strict=True):
            frame_mask = downsample_mask(frame_mask, stride)
            valid = frame_mask[:, None, None, :].to(lld.dtype)
            x = block(x, valid)
        per_frame = x.mean(dim=2)  # [B, C, T']
        weights = valid[:, 0]  # [B, 1, T']
        # clamp: a clip with no valid frame gets a zero embedding rather than NaN.
        embedding = (per_frame * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)
        return self.head(embedding), embedding


def batch_llds(
    mats: Sequence[np.ndarray], device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """[T_i, 25] float32 matrices -> (lld [B, 1, 25, T_max] zero-padded at the end,
    frame_mask [B, T_max] bool): the inputs of `ProsodicResNet.forward`."""
    t_max = max(m.shape[0] for m in mats)
    lld = torch.zeros(len(mats), 1, mats[0].shape[1], t_max)
    frame_mask = torch.zeros(len(mats), t_max, dtype=torch.bool)
    for i, m in enumerate(mats):
        # torch.tensor copies: m may be a read-only array (an np.load, a cache hit).
        lld[i, 0, :, : m.shape[0]] = torch.tensor(m.T, dtype=torch.float32)
        frame_mask[i, : m.shape[0]] = True
    return lld.to(device), frame_mask.to(device)
