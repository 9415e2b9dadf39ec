"""Data-parallel training through accelerate: 2 CPU processes (gloo) against one."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sk_i2m2 import I2M2Classifier

pytest.importorskip("accelerate")

ddp_fit = pytest.importorskip("ddp_fit")  # tests/ddp_fit.py, the script torchrun runs
ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(ROOT / "tests" / "ddp_fit.py"),
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{k}.json").read_text()) for k in range(2)]
    return out, ranks


def test_two_processes_train_one_model_on_half_the_batches_each(ddp_run):
    out, ranks = ddp_run
    X, y = ddp_fit.make_data()
    single = I2M2Classifier(**ddp_fit.PARAMS).fit(X, y)
    single_steps = [
        sum("train_loss" in batch for row in net.history for batch in row["batches"])
        for net in (single.pretrain_net_, single.finetune_net_)
    ]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    # Both processes end with the same model after the same epochs (the
    # same early-stopping decisions), each having taken half the steps.
    assert ranks[0]["proba_digest"] == ranks[1]["proba_digest"]
    assert ranks[0]["epochs"] == ranks[1]["epochs"]
    assert ranks[0]["steps"] == ranks[1]["steps"]
    per_epoch = [s // e for s, e in zip(ranks[0]["steps"], ranks[0]["epochs"])]
    single_per_epoch = [
        s // len(net.history)
        for s, net in zip(single_steps, (single.pretrain_net_, single.finetune_net_))
    ]
    assert per_epoch == [-(-s // 2) for s in single_per_epoch]

    # The model saved by the first process is an ordinary saved model.
    loaded = I2M2Classifier.load(out / "model")
    proba = loaded.predict_proba(X)
    np.testing.assert_allclose(proba, np.load(out / "proba.npy"), rtol=1e-5, atol=1e-6)
    # Twice the batch size (half the steps) over 3 epochs: within 5 points
    # of the single-process fit on this easy problem.
    ddp_accuracy = (loaded.classes_[proba.argmax(1)] == y).mean()
    single_accuracy = single.score(X, y)
    assert single_accuracy > 0.8
    assert abs(ddp_accuracy - single_accuracy) <= 0.05, (ddp_accuracy, single_accuracy)


class NotAnAccelerator:
    def prepare(self, *args):
        return args

    def backward(self, loss):
        loss.backward()


def test_accelerator_takes_its_own_mixed_precision():
    X, y = ddp_fit.make_data(40)
    clf = I2M2Classifier(accelerator=NotAnAccelerator(), mixed_precision=True)
    with pytest.raises(ValueError, match="accelerator's mixed_precision"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="'accelerator' parameter"):
        I2M2Classifier(accelerator="yes").fit(X, y)
