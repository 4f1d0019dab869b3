"""What every learned method shares: one :class:`Trainer`, one pretrained-weights convention.

* Training: a method writes a :class:`TrainTask` (its model, optimiser,
  batches, loss and validation metric) and runs it with :class:`Trainer`,
  which owns the loop, DDP under ``torchrun``, resumable fingerprinted
  checkpoints, the EMA, the progress bar, the wall-time budget, validation
  with best-weights selection and the log; :func:`plot_losses` draws the
  loss plot.
* Weights: :func:`save_pretrained` / :func:`load_pretrained` (returns
  :class:`Pretrained` ``(net, card)`` for every method) / :func:`available`,
  reading each method's network class and weights folder from its
  declaration in ``solvers/<name>/method.py``.
"""

from .checkpoint import check_writable, digest, load_checkpoint, save_checkpoint
from .plot import plot_losses, save_log_run
from .pretrained import Pretrained, available, find_weights, load_pretrained, method_named, save_pretrained
from .runtime import Dist, cleanup_distributed, cpu_name, hardware, pick_device, seed_everything, setup_distributed
from .trainer import Trainer, TrainResult, TrainTask
from .weights import list_weights, load_weights, save_weights, weights_path

__all__ = [
    "Dist", "Pretrained", "TrainResult", "TrainTask", "Trainer",
    "available", "check_writable", "cleanup_distributed", "cpu_name", "digest", "find_weights", "hardware",
    "list_weights", "load_checkpoint", "load_pretrained", "load_weights", "method_named", "pick_device",
    "plot_losses", "save_checkpoint", "save_log_run", "save_pretrained", "save_weights", "seed_everything", "setup_distributed",
    "weights_path",
]
