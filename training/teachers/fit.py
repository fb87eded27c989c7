"""Per-fold training of the two teachers, freezing, and the on-disk cache of their outputs.

Each teacher learns on the fold's training rows, keeps its best epoch by validation UA (the
mean CCC on a corpus without categories, where it learns only the dimensional head), is
frozen, and then its logits and embeddings for every row of the fold are written once to
`out_dir/outputs.npz` (with `metrics.json`, `model.pt`, and what reloading needs). When those
two files exist, a call returns them without training: re-runs and the student stage never run
a teacher again. On a corpus with dimensional ratings each teacher also learns arousal, valence
and dominance from its own input (a head on its embedding, 1 − CCC beside cross-entropy), and
its predictions are cached for the student's dimensional distillation. Knows nothing of the
student, the distillation loss or how folds are made.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.optim import AdamW
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from emodistill.bundle import DIMENSION_NAMES

from ..config import LinguisticTeacherConfig, ProsodicTeacherConfig
from ..corpus.manifest import Utterance
from ..data import NO_LABEL
from ..dimension_loss import concordance_loss
from ..features import EgemapsCache
from ..folds import FoldSplit
from ..metrics import Scores, concordance_per_dimension, mean_concordance, score_logits
from .linguistic import LinguisticTeacher, load_tokenizer
from .prosodic import ProsodicResNet, batch_llds

OUTPUTS_FILE = "outputs.npz"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.pt"
LLD_STATS_FILE = "lld_stats.npz"  # per-descriptor mean/std of the training rows
ENCODER_DIR = "encoder"  # the linguistic teacher's config and tokenizer (weights: model.pt)
_STD_FLOOR = 1e-6  # a constant descriptor (e.g. F0 in all-unvoiced data) must not divide by 0

# (rows, training) -> the model's positional inputs, on the device.
MakeBatch = Callable[[Sequence[Utterance], bool], tuple[torch.Tensor, ...]]


@dataclass
class TeacherOutputs:
    """A frozen teacher's outputs: logits [N, C] and embeddings [N, D], float32, row per id."""

    utt_ids: list[str]
    logits: np.ndarray
    embeddings: np.ndarray
    dimensions: np.ndarray | None = None  # [N, 3]; None: the teacher has no dimensional head

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "utt_ids": np.array(self.utt_ids, dtype=str),
            "logits": self.logits,
            "embeddings": self.embeddings,
        }
        if self.dimensions is not None:
            arrays["dimensions"] = self.dimensions
        np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types allow_pickle

    @classmethod
    def load(cls, path: Path) -> TeacherOutputs:
        with np.load(path) as data:
            dims = data["dimensions"].astype(np.float32) if "dimensions" in data else None
            return cls(
                [str(u) for u in data["utt_ids"]],
                data["logits"].astype(np.float32),
                data["embeddings"].astype(np.float32),
                dims,
            )

    def _rows(self, utt_ids: Sequence[str]) -> np.ndarray:
        index = {u: i for i, u in enumerate(self.utt_ids)}
        missing = [u for u in utt_ids if u not in index]
        if missing:
            raise KeyError(f"no teacher output for utterance(s) {missing[:5]} ({len(missing)})")
        return np.array([index[u] for u in utt_ids], dtype=np.int64)

    def select(self, utt_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(logits [n, C], embeddings [n, D]) for `utt_ids`, in that order."""
        rows = self._rows(utt_ids)
        return self.logits[rows], self.embeddings[rows]

    def select_dimensions(self, utt_ids: Sequence[str]) -> np.ndarray | None:
        """Dimensions [n, 3] for `utt_ids`, in that order; None without the head."""
        return None if self.dimensions is None else self.dimensions[self._rows(utt_ids)]


@dataclass
class TeacherResult:
    outputs: TeacherOutputs  # every row of train + val + test, in that order
    val: Scores
    test: Scores
    test_ccc: dict[str, float] | None = None  # per dimension; None without the head


def ratings(rows: Sequence[Utterance]) -> np.ndarray:
    """[N, 3] float32 in DIMENSION_NAMES' order; NaN rows where a row is not rated."""
    unrated = (np.nan, np.nan, np.nan)
    return np.array([r.dimensions or unrated for r in rows], dtype=np.float32).reshape(-1, 3)


def is_rated(rows: Sequence[Utterance]) -> bool:
    return any(r.dimensions is not None for r in rows)


def _load_cached(out_dir: Path) -> TeacherResult | None:
    if not ((out_dir / OUTPUTS_FILE).is_file() and (out_dir / METRICS_FILE).is_file()):
        return None
    metrics = json.loads((out_dir / METRICS_FILE).read_text())
    val, test = (Scores(**metrics[part]) for part in ("val", "test"))
    outputs = TeacherOutputs.load(out_dir / OUTPUTS_FILE)
    return TeacherResult(outputs, val, test, metrics.get("test_ccc"))


@dataclass
class _Task:
    """What the shared training and prediction loops need to know of one teacher."""

    # forward(*make_batch(...)) -> (logits [B, C], embedding [B, D])
    model: ProsodicResNet | LinguisticTeacher
    make_batch: MakeBatch
    length: Callable[[Utterance], int]  # sorts evaluation rows into batches
    batch_size: int
    split: FoldSplit
    labels: list[str]
    dimension_weight: float = 1.0  # of 1 − CCC beside CE, when the model has the head

    def targets(self, rows: Sequence[Utterance]) -> list[int]:
        """Label indices; NO_LABEL for rows rated in dimensions only."""
        return [self.labels.index(r.label) if r.label else NO_LABEL for r in rows]

    def scores(self, logits: np.ndarray, rows: Sequence[Utterance]) -> Scores:
        y = self.targets(rows)
        kept = [i for i, label in enumerate(y) if label != NO_LABEL]
        return score_logits([y[i] for i in kept], logits[kept], self.labels)

    def criterion(
        self, logits: np.ndarray, dims: np.ndarray | None, rows: list[Utterance]
    ) -> float:
        """What early stopping maximises: UA, or the mean CCC when no row has a label."""
        if any(r.label for r in rows) or dims is None:
            return self.scores(logits, rows).ua
        return mean_concordance(concordance_per_dimension(dims, ratings(rows), DIMENSION_NAMES))


@torch.no_grad()
def _predict(
    task: _Task, rows: Sequence[Utterance]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(logits [N, C], embeddings [N, D], dimensions [N, 3] or None) in eval mode, in the
    order of `rows`."""
    model = task.model.eval()
    logits = np.zeros((len(rows), model.n_classes), dtype=np.float32)
    embeddings = np.zeros((len(rows), model.embedding_dim), dtype=np.float32)
    dims = np.zeros((len(rows), 3), dtype=np.float32)
    # Length-sorted batches waste less padding; outputs do not depend on the padding.
    order = sorted(range(len(rows)), key=lambda i: task.length(rows[i]))
    for start in range(0, len(order), task.batch_size):
        idx = order[start : start + task.batch_size]
        out_logits, out_emb = model(*task.make_batch([rows[i] for i in idx], False))
        logits[idx], embeddings[idx] = out_logits.float().cpu(), out_emb.float().cpu()
        if model.dimension_head is not None:
            dims[idx] = model.dimensions_of(out_emb).float().cpu()
    return logits, embeddings, dims if model.dimension_head is not None else None


def _loss(task: _Task, rows: Sequence[Utterance]) -> torch.Tensor:
    """Cross-entropy on the labelled rows, plus the weighted 1 − CCC on the rated ones."""
    model = task.model
    device = next(model.parameters()).device
    logits, embedding = model(*task.make_batch(rows, True))
    target = torch.tensor(task.targets(rows), device=device)
    loss = logits.new_zeros(())
    if bool((target != NO_LABEL).any()):
        loss = loss + F.cross_entropy(logits, target)
    if model.dimension_head is not None and task.dimension_weight != 0:
        wanted = torch.from_numpy(ratings(rows)).to(device)
        rated = ~torch.isnan(wanted).any(dim=1)
        dims = model.dimensions_of(embedding)
        loss = loss + task.dimension_weight * concordance_loss(dims[rated], wanted[rated]).mean()
    return loss


def _fit(
    task: _Task,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    patience: int | None,
    generator: torch.Generator,
    progress_desc: str | None,
) -> None:
    """Training epochs (`_loss`); leaves the model holding the weights of its best validation
    UA (mean CCC on a corpus rated in dimensions only)."""
    model, train, val_rows = task.model, task.split.train, task.split.val
    best_ua, best_state, stale = -math.inf, None, 0
    bar = tqdm(range(epochs), desc=progress_desc, unit="epoch", disable=progress_desc is None)
    for _ in bar:
        model.train()
        order = torch.randperm(len(train), generator=generator).tolist()
        for start in range(0, len(order), task.batch_size):
            rows = [train[i] for i in order[start : start + task.batch_size]]
            loss = _loss(task, rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val_logits, _, val_dims = _predict(task, val_rows)
        ua = task.criterion(val_logits, val_dims, list(val_rows))
        # NaN (no validation rows) counts as progress, so the last epoch is kept.
        if math.isnan(ua) or ua > best_ua:
            best_ua, stale = (-math.inf if math.isnan(ua) else ua), 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        bar.set_postfix(loss=f"{loss.item():.3f}", val_ua=f"{ua:.3f}", best=f"{best_ua:.3f}")
        if patience is not None and stale >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)


def _finish(task: _Task, out_dir: Path) -> TeacherResult:
    """Freeze the teacher, compute and save its outputs for every row, then the metrics."""
    task.model.eval().requires_grad_(False)
    split = task.split
    rows = [*split.train, *split.val, *split.test]
    logits, embeddings, dims = _predict(task, rows)
    outputs = TeacherOutputs([r.utt_id for r in rows], logits, embeddings, dims)
    n_train, n_val = len(split.train), len(split.val)
    val = task.scores(logits[n_train : n_train + n_val], split.val)
    test = task.scores(logits[n_train + n_val :], split.test)
    outputs.save(out_dir / OUTPUTS_FILE)
    # metrics.json last: together with outputs.npz it marks a complete, reusable result.
    metrics: dict = {"val": val.to_dict(), "test": test.to_dict()}
    test_ccc = None
    if dims is not None:
        test_ccc = concordance_per_dimension(
            dims[n_train + n_val :], ratings(split.test), DIMENSION_NAMES
        )
        metrics["test_ccc"] = test_ccc
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return TeacherResult(outputs, val, test, test_ccc)


# --- prosodic teacher -------------------------------------------------------------------------


def _read_lld(cache: EgemapsCache, row: Utterance) -> np.ndarray:
    lld, _ = cache.load_or_extract(Path(row.path))
    lld = np.nan_to_num(np.asarray(lld, dtype=np.float32))
    # A clip shorter than one openSMILE frame still needs one frame for the network.
    return lld if lld.shape[0] else np.zeros((1, lld.shape[1]), dtype=np.float32)


def train_prosodic_teacher(
    config: ProsodicTeacherConfig,
    split: FoldSplit,
    labels: list[str],
    cache: EgemapsCache,
    out_dir: Path,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> TeacherResult:
    """Train (or load from `out_dir`) the eGeMAPS ResNet teacher of one fold."""
    out_dir = Path(out_dir)
    if (cached := _load_cached(out_dir)) is not None:
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    if not split.train:
        raise ValueError("the prosodic teacher needs training rows")
    rows = [*split.train, *split.val, *split.test]
    raw = {r.utt_id: _read_lld(cache, r) for r in tqdm(rows, "LLDs", disable=not progress)}
    # Standardise with training statistics only: val/test speakers must not leak into them.
    train_frames = np.concatenate([raw[r.utt_id] for r in split.train])
    mean = train_frames.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = np.maximum(train_frames.std(axis=0, dtype=np.float64), _STD_FLOOR).astype(np.float32)
    np.savez(out_dir / LLD_STATS_FILE, mean=mean, std=std)
    feats = {k: (v - mean) / std for k, v in raw.items()}

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rated = is_rated(split.train)
    model = ProsodicResNet(len(labels), config.channels, mean.shape[0], rated).to(device)

    def make_batch(batch: Sequence[Utterance], training: bool) -> tuple[torch.Tensor, ...]:
        mats = [feats[r.utt_id] for r in batch]
        if training:  # a random window of max_frames; evaluation sees whole clips
            mats = [_crop(m, config.max_frames, generator) for m in mats]
        return batch_llds(mats, device)

    def length(r: Utterance) -> int:
        return feats[r.utt_id].shape[0]

    task = _Task(
        model, make_batch, length, config.batch_size, split, labels, config.dimension_weight
    )
    optimizer = AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    desc = "prosodic teacher" if progress else None
    _fit(task, optimizer, config.epochs, config.patience_epochs, generator, desc)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "labels": labels,
            "channels": list(config.channels),
            "dimensions": rated,
            "mean": torch.from_numpy(mean),
            "std": torch.from_numpy(std),
        },
        out_dir / MODEL_FILE,
    )
    return _finish(task, out_dir)


def _crop(mat: np.ndarray, max_frames: int, generator: torch.Generator) -> np.ndarray:
    if mat.shape[0] <= max_frames:
        return mat
    start = int(torch.randint(0, mat.shape[0] - max_frames + 1, (1,), generator=generator))
    return mat[start : start + max_frames]


def load_prosodic_teacher(out_dir: Path) -> tuple[ProsodicResNet, np.ndarray, np.ndarray]:
    """The frozen teacher saved in `out_dir`, with the LLD mean [25] and std [25] it expects."""
    saved = torch.load(Path(out_dir) / MODEL_FILE, map_location="cpu")
    model = ProsodicResNet(
        len(saved["labels"]),
        saved["channels"],
        saved["mean"].shape[0],
        saved.get("dimensions", False),
    )
    model.load_state_dict(saved["state_dict"])
    model.eval().requires_grad_(False)
    return model, saved["mean"].numpy(), saved["std"].numpy()


# --- linguistic teacher -----------------------------------------------------------------------


def train_linguistic_teacher(
    config: LinguisticTeacherConfig,
    split: FoldSplit,
    labels: list[str],
    out_dir: Path,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> TeacherResult:
    """Fine-tune (or load from `out_dir`) the text-encoder teacher of one fold on transcripts."""
    out_dir = Path(out_dir)
    if (cached := _load_cached(out_dir)) is not None:
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tokenizer = load_tokenizer(config.encoder)
    rated = is_rated(split.train)
    model = LinguisticTeacher(
        config.encoder, len(labels), config.pooling, config.dropout, dimensions=rated
    )
    model.encoder.requires_grad_(config.finetune_encoder)
    model.to(device)

    def make_batch(batch: Sequence[Utterance], training: bool) -> tuple[torch.Tensor, ...]:
        enc = tokenizer(
            [r.text or "" for r in batch],
            padding=True,
            truncation=True,
            max_length=config.max_tokens,
            return_tensors="pt",
        )
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    def length(r: Utterance) -> int:
        return len(r.text or "")

    head = list(model.head.parameters())
    if model.dimension_head is not None:
        head += list(model.dimension_head.parameters())
    groups = [{"params": head, "lr": config.head_lr}]
    if config.finetune_encoder:
        groups.append({"params": list(model.encoder.parameters()), "lr": config.lr})
    optimizer = AdamW(groups, weight_decay=config.weight_decay)
    task = _Task(
        model, make_batch, length, config.batch_size, split, labels, config.dimension_weight
    )
    _fit(
        task, optimizer, config.epochs, None, generator, "linguistic teacher" if progress else None
    )
    # Reload = architecture from encoder/ (config + tokenizer) + every weight from model.pt.
    model.encoder.config.save_pretrained(out_dir / ENCODER_DIR)
    tokenizer.save_pretrained(out_dir / ENCODER_DIR)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "labels": labels,
            "encoder": config.encoder,
            "pooling": config.pooling,
            "dropout": config.dropout,
            "dimensions": rated,
        },
        out_dir / MODEL_FILE,
    )
    return _finish(task, out_dir)


def load_linguistic_teacher(out_dir: Path) -> tuple[LinguisticTeacher, PreTrainedTokenizerBase]:
    """(the frozen teacher saved in `out_dir`, its tokenizer); needs no hub and no encoder."""
    out_dir = Path(out_dir)
    saved = torch.load(out_dir / MODEL_FILE, map_location="cpu")
    model = LinguisticTeacher(
        str(out_dir / ENCODER_DIR),
        len(saved["labels"]),
        saved["pooling"],
        saved["dropout"],
        pretrained=False,
        dimensions=saved.get("dimensions", False),
    )
    model.load_state_dict(saved["state_dict"])
    model.eval().requires_grad_(False)
    return model, load_tokenizer(str(out_dir / ENCODER_DIR))
