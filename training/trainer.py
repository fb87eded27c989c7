"""The distillation loop for the student (one fold): setup, train, evaluate, resume.

Global batch = per-device batch × gradient accumulation × world size. Each micro-batch
re-seeds torch and numpy from (seed, step, its index in the global batch), so dropout and
SpecAugment draw the same numbers in a resumed run as in an uninterrupted one, and in N
processes as in one process with N times the accumulation. Rank 0 evaluates,
checkpoints and logs; the early-stopping decision is broadcast. Knows nothing of corpora,
folds or teacher architectures: teachers arrive as precomputed logits and embeddings.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from emodistill.audio import SAMPLE_RATE_HZ
from student.model import EmoDistillStudent, build_classifier, build_feature_extractor

from .config import RunConfig
from .data import Batch, BucketedBatchSampler, Clip, ClipDataset, Collator
from .dimension_loss import DimensionLoss
from .distill_loss import EmoDistillLoss
from .distributed import DistContext
from .metrics import Scores
from .student_eval import Validation, predict_student, score_clips, validation_of
from .trainer_state import TrainerState

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

STATE_FILE = "last.pt"


@dataclass
class TeacherTargets:
    """Precomputed teacher outputs, row-aligned with the training clips."""

    logits: dict[str, torch.Tensor]  # teacher -> [N, C]
    embeddings: dict[str, torch.Tensor]  # teacher -> [N, D_teacher]
    dimensions: dict[str, torch.Tensor] = field(default_factory=dict)  # teacher -> [N, 3]


@dataclass(frozen=True)
class StepTerms:
    """One batch's loss: `total` to back-propagate, every term as a float for the logs."""

    total: torch.Tensor
    parts: dict[str, float]

    def as_floats(self) -> dict[str, float]:
        return {**self.parts, "total": float(self.total.detach())}


@dataclass
class TrainResult:
    best_val: Scores  # NaN WA/UA on a corpus without categories
    best_val_ccc: dict[str, float] | None  # per dimension; None without the dimensional head
    best_epoch: int
    steps: int
    audio_s_per_s: float
    interrupted: bool = False


def _seed_everything(*parts: int) -> None:
    seed = int.from_bytes(random.Random(str(parts)).randbytes(4), "little")
    torch.manual_seed(seed)
    np.random.seed(seed)  # transformers draws SpecAugment masks from numpy


class StudentTrainer:
    def __init__(
        self,
        run: RunConfig,
        labels: list[str],
        train_clips: list[Clip],
        val_clips: list[Clip],
        targets: TeacherTargets,
        out_dir: Path,
        ctx: DistContext | None = None,
        progress: bool = True,
    ):
        self.run, self.optim = run, run.optim
        self.labels = labels
        self.train_clips, self.val_clips = train_clips, val_clips
        self.targets = targets
        self.out_dir = out_dir
        self.ctx = ctx or DistContext()
        self.progress = progress and self.ctx.is_main
        self.history: list[dict[str, float]] = []  # loss terms per optimizer step
        self.state = TrainerState()
        self._setup()

    # --- setup ------------------------------------------------------------------------------
    def _setup(self) -> None:
        o, ctx = self.optim, self.ctx
        per_rank = o.per_device_batch_size * ctx.world_size
        if o.global_batch_size % per_rank:
            raise ValueError(
                f"global batch {o.global_batch_size} is not a multiple of per-device batch "
                f"{o.per_device_batch_size} × {ctx.world_size} processes"
            )
        self.accumulation = o.global_batch_size // per_rank
        head_dims = {t: emb.shape[1] for t, emb in self.targets.embeddings.items()}
        if self.run.loss.beta == 0:
            head_dims = {}  # no embedding KD: heads would receive no gradient
        # The dimensional head exists when asked for and the corpus has ratings to learn.
        self.dimensional = self.run.loss.dimensions.enabled and any(
            c.dimensions is not None for c in self.train_clips
        )
        if not self.labels and not self.dimensional:
            raise ValueError(
                "the corpus has no categories and the dimensional task is off or unrated: "
                "the student has nothing to learn (enable loss.dimensions, or give labels)"
            )
        torch.manual_seed(o.seed)  # identical initial weights on every rank
        self.model = EmoDistillStudent(
            build_classifier(self.run.student, self.labels),
            build_feature_extractor(self.run.student),
            head_dims,
            self.dimensional,
        )
        self.model.to(ctx.device)
        self.ddp: DistributedDataParallel | None = None  # the model's DDP wrapper, if any
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            # LayerDrop skips random layers, whose parameters then get no gradient that step.
            unused = self.run.student.layerdrop > 0
            self.ddp = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=unused
            )
        self.step_model: torch.nn.Module = self.ddp if self.ddp is not None else self.model
        loss = self.run.loss
        if not self.labels:  # no categories: no CE and no logit KD, only the other terms
            loss = loss.model_copy(update={"alpha": 0.0, "gamma": 0.0})
        self.loss_fn = EmoDistillLoss(loss)
        self.dimension_loss = DimensionLoss(
            loss.dimensions,
            loss.use_linguistic and "linguistic" in self.targets.dimensions,
            loss.use_prosodic and "prosodic" in self.targets.dimensions,
        )
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for p in self.model.parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 else decay).append(p)  # biases and norms: no decay
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": o.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=o.lr,
        )
        max_samples = int(o.max_train_audio_s * SAMPLE_RATE_HZ)
        self.dataset = ClipDataset(self.train_clips, max_samples=max_samples, seed=o.seed)
        self.sampler = BucketedBatchSampler(
            [min(c.duration_s, o.max_train_audio_s) for c in self.train_clips],
            o.per_device_batch_size,
            self.accumulation,
            ctx.world_size,
            ctx.rank,
            o.bucket_batches,
            o.seed,
        )
        self.total_steps = o.epochs * self.sampler.steps_per_epoch
        warmup = int(o.warmup_fraction * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: self._lr_factor(step, warmup)
        )
        self.autocast: AbstractContextManager[object] = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if ctx.device.type == "cuda" and o.bf16
            else contextlib.nullcontext()
        )

    def _lr_factor(self, step: int, warmup: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        if self.optim.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1.0 - progress)

    # --- one step ---------------------------------------------------------------------------
    def _loss_step(self, batch: Batch) -> StepTerms:
        device = self.ctx.device
        with self.autocast:
            out = self.step_model(batch.input_values.to(device), batch.attention_mask.to(device))
        idx = batch.indices
        terms = self.loss_fn(
            out.logits.float(),
            batch.labels.to(device),
            {t: v[idx].to(device) for t, v in self.targets.logits.items()},
            {t: v.float() for t, v in out.projected.items()},
            {t: v[idx].to(device) for t, v in self.targets.embeddings.items()},
        )
        if out.dimensions is None:
            return StepTerms(terms.total, terms.as_floats())
        dims = self.dimension_loss(
            out.dimensions.float(),
            batch.ratings.to(device),
            {t: v[idx].to(device) for t, v in self.targets.dimensions.items()},
        )
        return StepTerms(terms.total + dims.total, {**terms.as_floats(), **dims.as_floats()})

    def _grad_sync(self, last_micro_batch: bool) -> AbstractContextManager[object]:
        """DDP all-reduces gradients on the last micro-batch of a global batch only."""
        if last_micro_batch or self.ddp is None:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    # --- the loop ---------------------------------------------------------------------------
    def train(self, resume: bool = False, stop_after_steps: int | None = None) -> TrainResult:
        """Train with early stopping; `stop_after_steps` simulates a kill (tests)."""
        if resume:
            self._load_state()
        o, s, ctx = self.optim, self.state, self.ctx
        writer = self._writer()
        collate = Collator.of(self.train_clips)
        bar = tqdm(
            total=self.total_steps,
            initial=s.step,
            desc="student",
            unit="step",
            disable=not self.progress,
        )
        audio_s, start = 0.0, time.perf_counter()
        while s.epoch < o.epochs and s.bad_epochs < o.patience_epochs:
            self.dataset.epoch = self.sampler.epoch = s.epoch
            self.sampler.skip_steps = s.step_in_epoch
            loader = DataLoader(
                self.dataset,
                batch_sampler=self.sampler,
                collate_fn=collate,
                num_workers=o.num_workers,
            )
            self.step_model.train()
            logged: dict[str, float] = {}
            for micro, batch in enumerate(loader):
                a = micro % self.accumulation
                last = a == self.accumulation - 1
                _seed_everything(o.seed, s.step, ctx.rank * self.accumulation + a)
                with self._grad_sync(last):
                    terms = self._loss_step(batch)
                    (terms.total / self.accumulation).backward()
                audio_s += float(batch.attention_mask.sum()) / SAMPLE_RATE_HZ
                for k, v in terms.as_floats().items():
                    logged[k] = logged.get(k, 0.0) + v / self.accumulation
                if not last:
                    continue
                logged = self._mean_over_ranks(logged)
                self.history.append({"step": s.step + 1, **logged})
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                s.step += 1
                s.step_in_epoch += 1
                bar.update()
                bar.set_postfix(loss=f"{logged['total']:.3f}")
                if writer:
                    for k, v in logged.items():
                        writer.add_scalar(f"loss/{k}", v, s.step)
                    writer.add_scalar("lr", self.scheduler.get_last_lr()[0], s.step)
                logged = {}
                if s.step % o.checkpoint_every_steps == 0:
                    self._save_state()
                if stop_after_steps is not None and s.step >= stop_after_steps:
                    self._save_state()
                    bar.close()
                    return self._result(audio_s, start, interrupted=True)
            self._end_epoch(writer)
        bar.close()
        if writer:
            writer.close()
        return self._result(audio_s, start)

    def _mean_over_ranks(self, logged: dict[str, float]) -> dict[str, float]:
        """Loss terms of the whole global batch, not just this rank's share."""
        if not self.ctx.distributed:
            return logged
        keys = sorted(logged)
        values = torch.tensor([logged[k] for k in keys], dtype=torch.float64)
        torch.distributed.all_reduce(values)
        return {k: float(v) / self.ctx.world_size for k, v in zip(keys, values, strict=True)}

    def _end_epoch(self, writer: SummaryWriter | None) -> None:
        s = self.state
        val: Validation = self.ctx.broadcast(self._validate() if self.ctx.is_main else None)
        s.epoch += 1
        s.step_in_epoch = 0
        criterion = val.criterion(categorical=bool(self.labels))
        # The first epoch always sets a checkpoint, so a NaN criterion (no spread in the
        # validation ratings) cannot leave the fold without one.
        if criterion > s.best_ua or s.best_epoch < 0:
            s.best_ua, s.best_epoch, s.bad_epochs = criterion, s.epoch, 0
            s.best_val, s.best_val_ccc = val.scores, val.ccc
            if self.ctx.is_main:
                self.model.save(self.out_dir / "checkpoint")
        else:
            s.bad_epochs += 1
        logged: dict[str, float] = {"val_ua": val.scores.ua, "val_wa": val.scores.wa}
        if not self.labels:  # the figures of a student without categories
            logged = {f"val_ccc_{name}": ccc for name, ccc in (val.ccc or {}).items()}
        if writer:
            for key, value in logged.items():
                writer.add_scalar(key.replace("_", "/", 1), value, s.epoch)
        if self.ctx.is_main:
            with (self.out_dir / "train_log.jsonl").open("a") as f:
                f.write(json.dumps({"epoch": s.epoch, "step": s.step, **logged}) + "\n")
        self._save_state()

    def _result(self, audio_s: float, start: float, interrupted: bool = False) -> TrainResult:
        s = self.state
        best = s.best_val or Scores(wa=math.nan, ua=math.nan, confusion=[], labels=[])
        elapsed = time.perf_counter() - start
        return TrainResult(
            best,
            s.best_val_ccc,
            s.best_epoch,
            s.step,
            audio_s * self.ctx.world_size / elapsed if elapsed else 0.0,
            interrupted,
        )

    # --- evaluation -------------------------------------------------------------------------
    def _predict(self, clips: list[Clip]) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits [N, C] and dimensions [N, 3] (None without the head) of whole clips."""
        return predict_student(
            self.model,
            clips,
            len(self.labels),
            self.ctx.device,
            self.optim.per_device_batch_size * self.optim.max_train_audio_s,
            self.autocast,
        )

    def _validate(self) -> Validation:
        return validation_of(self.val_clips, self.labels, *self._predict(self.val_clips))

    def evaluate(self, clips: list[Clip]) -> tuple[Scores, np.ndarray]:
        """Uncropped clips in length-sorted batches -> (scores, logits [N, C])."""
        logits, _ = self._predict(clips)
        return score_clips(clips, logits, self.labels), logits

    # --- state ------------------------------------------------------------------------------
    def _writer(self) -> SummaryWriter | None:
        if not self.ctx.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out_dir / "tensorboard"))

    def _save_state(self) -> None:
        if not self.ctx.is_main:
            return
        state_dir = self.out_dir / "state"
        state_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "trainer": self.state.to_dict(),
            "config": self.run.model_dump(mode="json"),
        }
        tmp = state_dir / f"{STATE_FILE}.tmp"
        torch.save(payload, tmp)
        tmp.replace(state_dir / STATE_FILE)  # a kill mid-save leaves the last good state

    def _load_state(self) -> None:
        path = self.out_dir / "state" / STATE_FILE
        if not path.is_file():
            return  # nothing to resume: start fresh
        payload = torch.load(path, map_location=self.ctx.device, weights_only=False)
        saved, now = payload["config"], self.run.model_dump(mode="json")
        if {k: saved[k] for k in ("student", "loss", "optim")} != {
            k: now[k] for k in ("student", "loss", "optim")
        }:
            raise ValueError(f"{path} was saved with another student/loss/optim config")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainerState.from_dict(payload["trainer"])
