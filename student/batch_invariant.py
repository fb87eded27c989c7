"""The classifier's forward pass, made independent of what a clip is batched with.

transformers' `...ForSequenceClassification` with an attention mask is exact for layer-norm
checkpoints (HuBERT-large, wav2vec 2.0-large, WavLM-large), but not for group-norm ones
(the base sizes): their first conv layer's GroupNorm takes each channel's mean and variance
over ALL frames, padding included. Here those statistics are taken over the clip's valid
frames only. The conv feature encoder has no padding of its own, so a valid output frame
never reads a padded sample; with the norm masked too, every valid frame equals the
clip-alone value. The rest is transformers' own modules (projection, encoder with its
attention mask: WavLM's relative position bias depends only on the distance between two
frames, so masking keys is enough), then the mean over valid frames. The preprocessor's
per-clip normalisation (`do_normalize`) is the first step, over valid samples only, so the
model's input is raw audio wherever it runs (PyTorch, the bundle, a Triton repository).
On an unpadded clip this is the original computation, so pretrained weights load unchanged.
Training and export both run this forward.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .encoders import SpeechClassifier, SpeechEncoder

# transformers' Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm, the same epsilon.
NORMALIZE_EPS = 1e-7


def valid_frames(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """lengths [B] -> mask [B, n_frames] (float, 1 = valid)."""
    steps = torch.arange(n_frames, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).to(torch.float32)


def conv_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Output frames of an unpadded conv layer for input lengths [B]."""
    return torch.clamp(torch.div(lengths - kernel, stride, rounding_mode="floor") + 1, min=0)


def normalize_valid(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per clip over its valid samples; padding set to 0.

    values [B, S] float32, mask [B, S] (1 = sample) -> [B, S]. The statistics are
    accumulated in float32 whatever the graph's precision (the fp16 export keeps these
    reductions in fp32).
    """
    m = mask.to(values.dtype)
    count = m.sum(dim=-1, keepdim=True).clamp_min(1.0)  # [B, 1]
    mean = (values * m).sum(dim=-1, keepdim=True) / count
    var = (((values - mean) * m) ** 2).sum(dim=-1, keepdim=True) / count
    return (values - mean) / torch.sqrt(var + NORMALIZE_EPS) * m


def masked_group_norm(h: torch.Tensor, mask: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm with one group per channel, statistics over valid frames only.

    h [B, C, T], mask [B, T] (1 = valid). The mean and the (biased) variance are those
    nn.GroupNorm computes on the clip alone; padded frames are normalised with them too,
    which does not matter since nothing valid reads them.
    """
    if norm.num_groups != norm.num_channels:
        raise ValueError("only the per-channel GroupNorm of the first conv layer is supported")
    m = mask[:, None, :].to(h.dtype)  # [B, 1, T]
    count = m.sum(dim=-1, keepdim=True).clamp_min(1.0)  # [B, 1, 1]
    mean = (h * m).sum(dim=-1, keepdim=True) / count
    var = (((h - mean) * m) ** 2).sum(dim=-1, keepdim=True) / count
    out = (h - mean) / torch.sqrt(var + norm.eps)
    return out * norm.weight[None, :, None] + norm.bias[None, :, None]


def classify(
    model: SpeechClassifier,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """input_values [B, S] float raw audio, attention_mask [B, S] (1 = sample) -> logits
    [B, C], pooled embedding [B, P]. Batch-invariant; see the module docstring."""
    encoder, config = cast(SpeechEncoder, model.base_model), model.config
    if getattr(config, "add_adapter", False):
        raise ValueError("students with an adapter after the encoder are not supported")
    if normalize:
        input_values = normalize_valid(input_values, attention_mask)
    lengths = attention_mask.to(torch.int64).sum(dim=-1)  # [B] samples
    x = input_values[:, None, :]  # [B, 1, S]
    for i, layer in enumerate(encoder.feature_extractor.conv_layers):
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
    projected = encoder.feature_projection(features)
    # HuBERT's projection returns the hidden states; wav2vec 2.0's and WavLM's also return
    # their normalised input (for quantisation), which a classifier does not use.
    hidden = projected[0] if isinstance(projected, tuple) else projected
    # SpecAugment, in training only, on valid frames only.
    spans_on = cast(torch.LongTensor, frames.long())  # transformers' declared type
    hidden = encoder._mask_hidden_states(hidden, attention_mask=spans_on)
    hidden = encoder.encoder(hidden, attention_mask=frames.to(torch.bool))[0]  # [B, T, H]
    hidden = model.projector(hidden)  # [B, T, P]
    weights = frames[:, :, None].to(hidden.dtype)
    embedding = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    return model.classifier(embedding), embedding
