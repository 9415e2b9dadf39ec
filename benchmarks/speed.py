"""Training speed of I2M2Classifier against a minimal hand-written torch loop.

Both train the *same* modules (the fitted classifier's, deep-copied) with the
same batch size, epochs, optimizer and losses: stage 1 (every expert on its
own loss) then stage 2 (the product of experts). The classifier runs with
``early_stopping=False`` so both do exactly the same number of steps; its
time includes everything ``fit`` does (validation, input statistics, model
construction). The last line printed is ``ratio <classifier time / hand loop
time>``.

Usage, from the repository root::

    python -m benchmarks.speed --quick        # CPU cases, a few minutes
    python -m benchmarks.speed                # CPU cases, and the AV-MNIST case on CUDA
    python -m benchmarks.speed --no-conv      # skip the CPU conv case
    python -m benchmarks.speed --frozen       # frozen-backbone case only
    python -m benchmarks.speed --device cpu --avmnist --n-samples 200 --epochs 1
                                              # every case at toy size, AV-MNIST on the CPU

The CPU conv case trains the default Conv2d experts on AV-MNIST shapes
(2,000 samples, ``batch_size="auto"``); it prints its own ratio line,
``conv ratio ...``, before the final one.

The frozen-backbone case fits with a frozen conv backbone
(``ModuleEncoder(backbone, trainable=False)``) against a fit on the
backbone's features computed beforehand and passed as a vector modality;
it prints ``frozen ratio <backbone fit time / features fit time> (<setting>)`` for
fixed epochs and for the defaults, after warming both fits up.

Every case prints the fit's set-up time outside the epochs (validation, input
statistics, model, data placement) apart from its training, the joint
fine-tune stage's samples/s and ``predict_proba``'s samples/s.
``--n-samples`` and ``--epochs`` replace every case's size and epochs (for a
dry run of a GPU check on the CPU); the defaults are the documented sizes.
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import time

import numpy as np
import torch

from sk_i2m2 import I2M2Classifier, ModalityDict
from sk_i2m2._allocator import cpu_allocator
from sk_i2m2.encoders import Conv2dEncoder, MLPEncoder, ModuleEncoder
from sk_i2m2.nn.losses import ExpertsNLLLoss, ProductOfExpertsNLLLoss


def cpu_case(n_samples):
    """Three small vector modalities (MLP experts)."""
    rng = np.random.RandomState(0)
    y = rng.randint(0, 4, n_samples)
    X = {
        f"m{k}": (rng.randn(n_samples, 32) + 0.3 * y[:, None]).astype(np.float32) for k in range(3)
    }
    encoders = {name: MLPEncoder(hidden_sizes=(64, 32)) for name in X}
    return X, y, encoders


def avmnist_case(n_samples):
    """AV-MNIST shapes: 28x28 image + 112x112 spectrogram, LeNet-style experts."""
    rng = np.random.RandomState(0)
    y = rng.randint(0, 10, n_samples)
    image = rng.rand(n_samples, 1, 28, 28).astype(np.float32)
    audio = rng.rand(n_samples, 1, 112, 112).astype(np.float32)
    # A weak class signal (a brighter row or column), so accuracy is not saturated.
    image[np.arange(n_samples), 0, y * 2, :] += 0.06
    audio[np.arange(n_samples), 0, :, y * 8] += 0.03
    encoders = {
        "image": Conv2dEncoder(channels=(6, 12, 24, 48)),  # 5x5 + 3 blocks
        "audio": Conv2dEncoder(channels=(6, 12, 24, 48, 96, 192)),  # 5x5 + 5 blocks
    }
    return {"image": image, "audio": audio}, y, encoders


def cpu_conv_case(n_samples):
    """AV-MNIST shapes with the default conv experts (as a user on the CPU gets them)."""
    X, y, _ = avmnist_case(n_samples)
    return X, y, None


class _ResidualBlock(torch.nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.skip = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def small_resnet():
    """A ResNet-like backbone from ``torch.nn`` (stem, 3 residual stages, 128 features)."""
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 1, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        _ResidualBlock(32, 32, 1),
        _ResidualBlock(32, 64, 2),
        _ResidualBlock(64, 128, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).eval()


def frozen_case(n_samples):
    """3x32x32 images through a frozen backbone, plus a small clinical table."""
    rng = np.random.RandomState(0)
    y = rng.randint(0, 4, n_samples)
    image = rng.rand(n_samples, 3, 32, 32).astype(np.float32)
    for k in range(4):  # a brighter band per class
        image[y == k, k % 3, k * 4 : k * 4 + 8, :] += 0.5
    table = (rng.randn(n_samples, 12) + 0.3 * y[:, None]).astype(np.float32)
    return {"image": image, "table": table}, y


def _median_fit_time(clf, X, y, repeats):
    """Median wall and CPU seconds of ``repeats`` fits."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        clf.fit(X, y)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return float(np.median(wall)), float(np.median(cpu))


def run_frozen_case(n_samples, epochs, uncached, repeats=3):
    """Fit time with a frozen backbone over fit time on its precomputed features.

    Two settings: ``epochs`` per stage without early stopping, and the
    defaults (early stopping on, at most 100 epochs per stage). Both fits are
    warmed up first (the first fit in a process pays one-off costs that would
    otherwise land on whichever runs first); each is then timed ``repeats``
    times and the median reported. The backbone's own pass over the rows in
    plain torch, the least any frozen fit adds, is timed too.

    Returns ``{setting: wall-time ratio}``.
    """
    X, y = frozen_case(n_samples)
    backbone = small_resnet()
    images = torch.as_tensor(X["image"])
    with torch.no_grad():
        features = torch.cat([backbone(batch) for batch in images.split(256)])
    with_features = {**X, "image": features.numpy()}
    print(f"\n== frozen backbone: {n_samples} samples of 3x32x32 + 12 features, CPU")
    with cpu_allocator(torch.device("cpu")), torch.no_grad():
        start = time.perf_counter()
        for batch in images.split(256):
            backbone(batch)
        backbone_pass = time.perf_counter() - start
    print(f"backbone pass over the rows (plain torch) {backbone_pass:6.2f} s")

    fixed_epochs = dict(max_epochs=epochs, early_stopping=False)
    settings = {f"{epochs} epochs per stage": fixed_epochs, "defaults (early stopping)": {}}
    ratios = {}
    for setting, params in settings.items():
        params = dict(params, device="cpu", random_state=0)
        # Linear experts on the features in both fits, as the frozen model's heads are.
        on_features = I2M2Classifier(encoders={"image": MLPEncoder(hidden_sizes=())}, **params)
        with_backbone = I2M2Classifier(
            encoders={"image": ModuleEncoder(backbone, trainable=False)}, **params
        )
        for clf, data in [(on_features, with_features), (with_backbone, X)]:
            warm_up = clf.get_params()
            clf.set_params(max_epochs=1, early_stopping=False).fit(data, y)
            clf.set_params(**warm_up)
        features_wall, features_cpu = _median_fit_time(on_features, with_features, y, repeats)
        frozen_wall, frozen_cpu = _median_fit_time(with_backbone, X, y, repeats)
        epochs_run = [
            len(clf.pretrain_net_.history) + len(clf.finetune_net_.history)
            for clf in (on_features, with_backbone)
        ]
        ratios[setting] = frozen_wall / features_wall
        print(
            f"{setting}: precomputed features {features_wall:.2f} s (CPU {features_cpu:.2f} s), "
            f"frozen backbone {frozen_wall:.2f} s (CPU {frozen_cpu:.2f} s), "
            f"epochs in all {epochs_run[0]} and {epochs_run[1]}, "
            f"train accuracy {with_backbone.score(X, y):.3f}; "
            f"ratio {ratios[setting]:.3f} (CPU {frozen_cpu / features_cpu:.3f})"
        )
        print(
            f"  beyond the features fit and the backbone pass: "
            f"{frozen_wall - features_wall - backbone_pass:+.2f} s; the two alone give "
            f"ratio {(features_wall + backbone_pass) / features_wall:.3f}"
        )
    if uncached:  # an augmented modality runs its frozen encoder on every batch
        per_batch = I2M2Classifier(
            encoders={"image": ModuleEncoder(backbone, trainable=False)},
            augment={"image": lambda batch: batch},
            **fixed_epochs,
            device="cpu",
            random_state=0,
        )
        start = time.perf_counter()
        per_batch.fit(X, y)
        print(
            f"backbone on every batch ({epochs} epochs per stage, once): "
            f"{time.perf_counter() - start:.2f} s"
        )
    return ratios


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_loop(module, X, y, batch_size, epochs, lr, weight_decay, device):
    """The reference: slice batches from device tensors, no framework."""
    X = {k: torch.as_tensor(v, device=device) for k, v in X.items()}
    if device.type == "cuda":  # the layout the classifier uses for images
        X = {
            k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
            for k, v in X.items()
        }
    y = torch.as_tensor(y, device=device)
    n = len(y)
    module.train()
    for loss_fn, stage_lr in [(ExpertsNLLLoss(), lr), (ProductOfExpertsNLLLoss(), lr / 10)]:
        loss_fn = loss_fn.to(device)
        optimizer = torch.optim.AdamW(module.parameters(), lr=stage_lr, weight_decay=weight_decay)
        for _ in range(epochs):
            perm = torch.randperm(n, device=device)
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                if len(idx) < 2:
                    continue
                optimizer.zero_grad()
                loss = loss_fn(module(**{k: v[idx] for k, v in X.items()}), y[idx])
                loss.backward()
                optimizer.step()
    _sync(device)


def run_case(name, X, y, encoders, batch_size, epochs, device):
    n = len(y)
    dataset_mb = sum(v.nbytes for v in X.values()) / 2**20
    clf = I2M2Classifier(
        encoders=encoders,
        batch_size=batch_size,
        max_epochs=epochs,
        early_stopping=False,
        device=device,
        random_state=0,
    )
    # Warm-up, not timed: one epoch per stage on the same data, so that the
    # one-off cuDNN algorithm search for these batch shapes is out of both
    # timings (the hand loop below runs with the same cuDNN settings).
    clf.set_params(max_epochs=1).fit(X, y)
    clf.set_params(max_epochs=epochs)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    clf.fit(X, y)
    _sync(device)
    fit_time = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    training_time = sum(clf.pretrain_net_.history[:, "dur"]) + sum(
        clf.finetune_net_.history[:, "dur"]
    )

    module = copy.deepcopy(clf.module_)
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    start = time.perf_counter()
    # With the allocator setting fit uses on the CPU, so that the ratio is the
    # framework's cost alone (benchmarks/avmnist_cpu.py measures the setting).
    with cpu_allocator(device):
        hand_loop(module, X, y, clf.batch_size_, epochs, clf.lr, clf.weight_decay_, device)
    hand_time = time.perf_counter() - start
    torch.backends.cudnn.benchmark = previous

    start = time.perf_counter()
    clf.predict_proba(X)
    predict_time = time.perf_counter() - start

    samples = 2 * epochs * n  # two stages
    finetune_dur = sum(clf.finetune_net_.history[:, "dur"])
    print(
        f"\n== {name}: {n} samples, {dataset_mb:.0f} MB of inputs, batch {clf.batch_size_}, "
        f"{epochs} epochs per stage, device {device}"
    )
    print(f"I2M2Classifier.fit   {fit_time:7.2f} s   {samples / fit_time:10.0f} samples/s")
    print(f"hand-written loop    {hand_time:7.2f} s   {samples / hand_time:10.0f} samples/s")
    print(f"  joint fine-tune stage alone {epochs * n / finetune_dur:10.0f} samples/s")
    print(f"  epochs of both stages       {training_time:7.2f} s")
    print(
        f"  set-up outside the epochs   {fit_time - training_time:7.2f} s (validation, "
        "input statistics, model, data placement)"
    )
    print(f"predict_proba        {predict_time:7.2f} s   {n / predict_time:10.0f} samples/s")
    print(f"peak process RSS     {peak_rss_mb:7.0f} MB (inputs {dataset_mb:.0f} MB)")
    if device.type == "cuda":
        print(f"peak CUDA memory     {torch.cuda.max_memory_allocated(device) / 2**20:7.0f} MB")
    return fit_time / hand_time


def accuracy_check(X, y, encoders, device, epochs, gpu_batch_size):
    """Test accuracy at the default and the GPU batch size against the paper's batch 40."""
    from sklearn.model_selection import train_test_split

    X_tr, X_te, y_tr, y_te = train_test_split(
        ModalityDict(X), y, test_size=0.25, stratify=y, random_state=0
    )
    print("\n== accuracy, AV-MNIST shapes (fixed epochs, early stopping on)")
    for batch_size in [40, "auto", gpu_batch_size]:
        clf = I2M2Classifier(
            encoders=encoders,
            batch_size=batch_size,
            max_epochs=epochs,
            device=device,
            random_state=0,
        )
        start = time.perf_counter()
        score = clf.fit(X_tr, y_tr).score(X_te, y_te)
        print(
            f"batch {clf.batch_size_:>5}: test accuracy {score:.4f} "
            f"({time.perf_counter() - start:.0f} s)"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU case only, fewer epochs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-conv", action="store_true", help="skip the CPU conv case")
    parser.add_argument(
        "--no-accuracy",
        action="store_true",
        help="skip the CUDA accuracy check (batch 40 against larger batches)",
    )
    parser.add_argument(
        "--gpu-batch-size",
        type=int,
        default=2048,
        help="batch size of the CUDA case (the documented GPU setting)",
    )
    parser.add_argument("--frozen", action="store_true", help="only the frozen-backbone case (CPU)")
    parser.add_argument(
        "--avmnist",
        action="store_true",
        help="run the AV-MNIST case on the CPU too (it runs on CUDA only by default)",
    )
    parser.add_argument(
        "--n-samples", type=int, default=None, help="samples of every case (default: per case)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per stage of every case (default: per case)",
    )
    args = parser.parse_args(argv)

    def size(default):
        return default if args.n_samples is None else args.n_samples

    def epochs(default, quick):
        if args.epochs is not None:
            return args.epochs
        return quick if args.quick else default

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )

    if args.frozen:
        ratios = run_frozen_case(
            size(500 if args.quick else 4000), epochs=epochs(20, 3), uncached=not args.quick
        )
        for setting, ratio in ratios.items():
            print(f"frozen ratio {ratio:.3f} ({setting})")
        return
    X, y, encoders = cpu_case(size(20_000))
    ratio = run_case(
        "CPU case: 3 MLP experts + inter",
        X,
        y,
        encoders,
        batch_size=128,
        epochs=epochs(5, 2),
        device=torch.device("cpu"),
    )
    if not args.no_conv:
        X, y, encoders = cpu_conv_case(size(2000))
        conv_ratio = run_case(
            "CPU conv case: default Conv2d experts, AV-MNIST shapes",
            X,
            y,
            encoders,
            batch_size="auto",
            epochs=epochs(3, 1),
            device=torch.device("cpu"),
        )
        print(f"conv ratio {conv_ratio:.3f}")
    if device.type == "cuda" or args.avmnist:
        X, y, encoders = avmnist_case(size(20_000))
        ratio = run_case(
            "AV-MNIST shapes",
            X,
            y,
            encoders,
            batch_size=args.gpu_batch_size,
            epochs=epochs(5, 2),
            device=device,
        )
        if not args.quick and not args.no_accuracy:
            accuracy_check(
                X, y, encoders, device, epochs=epochs(10, 10), gpu_batch_size=args.gpu_batch_size
            )
    print(f"ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
