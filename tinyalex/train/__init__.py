"""Training: d2l's ``train_ch6`` on Fashion-MNIST, reported as the book does.

    from tinyalex.train import D2L_RECIPES, fit
    net, records = fit(dict(D2L_RECIPES["lenet"], epochs=2), load_fashion_mnist(),
                       backend="numpy", out_dir="runs/lenet")

* ``epoch.py``: the loop itself: d2l's step (``train_step``: zero_grad, forward,
  loss, backward, SGD step), one epoch around it (``train_epoch``: batches, steps,
  metrics) and evaluation (``evaluate_accuracy``, ``predict``);
* ``shares.py``: the step of one process's rows of a global batch (distributed runs);
* ``run.py``: the run around it (``fit``): building the recipe's model, resuming,
  the folder lock, signals, and the files of every epoch (checkpoint.npz,
  metrics.json, curves.png);
* ``replicas.py``: the start of a distributed run (``fit(..., dist=...)``,
  ``tinyalex/dist/``): every process gets rank 0's weights, momentum and random state.

The recipes are in ``tinyalex/recipes.py``, the faults in ``tinyalex/faults.py``, the
scripts' exit status in ``tinyalex/exits.py``; the names callers use are re-exported
here.
"""

from ..devices import device_name
from ..exits import EXIT_DIVERGED
from ..faults import DIVERGENCE_FACTOR, OutOfMemory, TrainingDiverged, TrainingInterrupted
from ..recipes import D2L_RECIPES, check_recipe
from .epoch import evaluate_accuracy, predict, summary_line, train_epoch, train_step
from .run import CHECKPOINT, CURVES, METRICS, fit

__all__ = ["CHECKPOINT", "CURVES", "D2L_RECIPES", "DIVERGENCE_FACTOR", "EXIT_DIVERGED",
           "METRICS", "OutOfMemory", "TrainingDiverged", "TrainingInterrupted",
           "check_recipe", "device_name", "evaluate_accuracy", "fit", "predict",
           "summary_line", "train_epoch", "train_step"]
