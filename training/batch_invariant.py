"""The HuBERT classifier's forward pass, made independent of what a clip is batched with.

`HubertForSequenceClassification` with an attention mask is exact for layer-norm
checkpoints (HuBERT-large), but not for group-norm ones (HuBERT-base): its first conv
layer's GroupNorm takes each channel's mean and variance over ALL frames, padding
included. Here those statistics are taken over the clip's valid frames only. The conv
feature encoder has no padding of its own, so a valid output frame never reads a padded
sample; with the norm masked too, every valid frame equals the clip-alone value. The rest
is transformers' own modules (projection, encoder with its attention mask), then the mean
over valid frames. On an unpadded clip this is the original computation, so pretrained
weights load unchanged. Training and export both run this forward.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import HubertForSequenceClassification


def valid_frames(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """lengths [B] -> mask [B, n_frames] (float, 1 = valid)."""
    steps = torch.arange(n_frames, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).to(torch.float32)


def conv_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Output frames of an unpadded conv layer for input lengths [B]."""
    return torch.clamp(torch.div(lengths - kernel, stride, rounding_mode="floor") + 1, min=0)


def masked_group_norm(h: torch.Tensor, mask: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm with one group per channel, statistics over valid frames only.

    h [B, C, T], mask [B, T] (1 = valid). The mean and the (biased) variance are those
    nn.GroupNorm computes on the clip alone; padded frames are normalised with them too,
    which does not matter since nothing valid reads them.
    """
    if norm.num_groups != norm.num_channels:
        raise ValueError("only the per-channel GroupNorm of HuBERT's first layer is supported")
    m = mask[:, None, :].to(h.dtype)  # [B, 1, T]
    count = m.sum(dim=-1, keepdim=True).clamp_min(1.0)  # [B, 1, 1]
    mean = (h * m).sum(dim=-1, keepdim=True) / count
    var = (((h - mean) * m) ** 2).sum(dim=-1, keepdim=True) / count
    out = (h - mean) / torch.sqrt(var + norm.eps)
    return out * norm.weight[None, :, None] + norm.bias[None, :, None]


def classify(
    model: HubertForSequenceClassification,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """input_values [B, S] float, attention_mask [B, S] (1 = sample) -> logits [B, C],
    pooled embedding [B, P]. Batch-invariant; see the module docstring."""
    hubert, config = model.hubert, model.config
    lengths = attention_mask.to(torch.int64).sum(dim=-1)  # [B] samples
    x = input_values[:, None, :]  # [B, 1, S]
    layers = list(hubert.feature_extractor.conv_layers)
    for i, layer in enumerate(layers):
        lengths = conv_lengths(lengths, config.conv_kernel[i], config.conv_stride[i])
        if i == 0 and config.feat_extract_norm == "group":
            h = layer.conv(x)
            x = layer.activation(
                masked_group_norm(h, valid_frames(lengths, h.shape[-1]), layer.layer_norm)
            )
        else:
            x = layer(x)
    features = x.transpose(1, 2)  # [B, T, C]
    frames = valid_frames(lengths, features.shape[1])  # [B, T]
    hidden = hubert.feature_projection(features)
    hidden = hubert._mask_hidden_states(hidden)  # SpecAugment, in training only
    hidden = hubert.encoder(hidden, attention_mask=frames.to(torch.bool))[0]  # [B, T, H]
    hidden = model.projector(hidden)  # [B, T, P]
    weights = frames[:, :, None].to(hidden.dtype)
    embedding = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    return model.classifier(embedding), embedding
