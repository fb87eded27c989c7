"""Run by tests/training/test_trainer.py, alone or under torchrun: train, save weights+losses.

usage: python ddp_worker.py CLIPS_DIR OUT_DIR PER_DEVICE_BATCH
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.training.trainer_fixtures import LABELS, run_config, targets, write_clips
from training.distributed import init_distributed
from training.trainer import StudentTrainer

clips_dir, out_dir, per_device = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
ctx = init_distributed("cpu")
torch.set_num_threads(1)
clips = write_clips(clips_dir, write=False)  # the test wrote them before starting us
trainer = StudentTrainer(
    run_config(per_device),
    LABELS,
    clips,
    clips[:4],
    targets(len(clips)),
    out_dir,
    ctx,
    progress=False,
)
trainer.train()
torch.save(trainer.model.state_dict(), out_dir / f"weights_rank{ctx.rank}.pt")
if ctx.is_main:
    (out_dir / "history.json").write_text(json.dumps(trainer.history))
