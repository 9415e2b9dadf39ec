"""One I2M2 fit, data-parallel across the processes of a ``torchrun`` run.

Run by ``tests/test_accelerate.py``::

    torchrun --nproc_per_node 2 tests/ddp_fit.py OUT_DIR

Each process writes ``OUT_DIR/rank<k>.json`` (training steps it took, a
digest of its model's predictions); the first process also saves the model
to ``OUT_DIR/model`` and its predictions to ``OUT_DIR/proba.npy``.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from sk_i2m2 import I2M2Classifier

# As in the tests: one intra-op thread per process.
torch.set_num_threads(1)

PARAMS = dict(max_epochs=3, batch_size=16, lr=2e-2, cv=None, n_iter_no_change=2, random_state=0)


def make_data(n=400, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    X = {
        "a": (rng.randn(n, 6) + 1.0 * y[:, None]).astype(np.float32),
        "b": (rng.randn(n, 4) - 0.8 * y[:, None]).astype(np.float32),
    }
    return X, y


def main(out):
    # The null embeddings of the inter expert get no gradient on complete
    # data; DDP must be told that some parameters may go unused.
    accelerator = Accelerator(
        cpu=True, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)]
    )
    X, y = make_data()
    clf = I2M2Classifier(**PARAMS, accelerator=accelerator).fit(X, y)
    proba = clf.predict_proba(X)
    steps = [
        sum("train_loss" in batch for row in net.history for batch in row["batches"])
        for net in (clf.pretrain_net_, clf.finetune_net_)
    ]
    report = {
        "num_processes": accelerator.num_processes,
        "steps": steps,
        "epochs": [len(clf.pretrain_net_.history), len(clf.finetune_net_.history)],
        "proba_digest": hashlib.sha256(proba.round(5).tobytes()).hexdigest(),
    }
    Path(out, f"rank{accelerator.process_index}.json").write_text(json.dumps(report))
    if accelerator.is_main_process:
        clf.save(Path(out, "model"))
        np.save(Path(out, "proba.npy"), proba)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
