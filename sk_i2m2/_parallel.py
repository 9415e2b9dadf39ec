"""Fits running inside a parallel engine: their CPU share and their GPU.

joblib's process backends (``loky``), Dask's nanny and Ray start their
workers with ``OMP_NUM_THREADS`` set to the worker's CPU share, which torch
reads once, when it is imported. A fit can still find more intra-op threads
than its share: torch imported before the engine set its limits (a worker
thread of the client process, ``threadpoolctl.threadpool_limits`` or joblib's
``inner_max_num_threads`` applied in a running process, a Ray task asking for
fewer CPUs than its worker was started with). Several such fits on one
machine each spread over every core and slow each other down, so ``fit``
caps its threads at :func:`cpu_share` (see :mod:`sk_i2m2._threads`).
"""

from __future__ import annotations

import os
import sys

import torch

__all__ = [
    "cpu_share",
    "worker_cuda_index",
    "check_accelerator",
    "shared_seed",
]


def _available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _env_threads():
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "")), 1)
    except ValueError:
        return None


def _threadpoolctl_threads():
    """The OpenMP limit in effect now (``threadpoolctl`` sets it in-process)."""
    from threadpoolctl import threadpool_info

    limits = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "openmp"]
    return min(limits) if limits else None


def _ray_context():
    """Ray's runtime context in a Ray task or actor, else ``None``."""
    ray = sys.modules.get("ray")  # only where the engine runs: never import it
    if ray is None or not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    return context if context.worker.mode == ray.WORKER_MODE else None


def _ray_cpus():
    context = _ray_context()
    if context is None:
        return None
    cpus = context.get_assigned_resources().get("CPU")
    return max(int(cpus), 1) if cpus else None


def _ray_gpu_ids():
    """IDs (str) of the GPUs given to the current Ray task, else ``None``."""
    if _ray_context() is None:
        return None
    return [str(i) for i in sys.modules["ray"].get_gpu_ids()]


def _dask_worker():
    """The Dask worker running the current task, else ``None``."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.get_worker()
    except ValueError:  # not in a worker
        return None


def _dask_cpus():
    worker = _dask_worker()
    if worker is None:
        return None
    # The worker's tasks run in ``nthreads`` threads, which share the
    # process's one torch thread pool.
    return max(_available_cpus() // worker.state.nthreads, 1)


def cpu_share(openmp=True):
    """Threads a fit may use: the smallest limit set by the engine it runs in.

    The limits read are ``OMP_NUM_THREADS``, the OpenMP limit of
    ``threadpoolctl`` (set by joblib's ``inner_max_num_threads`` and
    ``threadpool_limits``), the CPUs a Ray task was given and the CPUs per
    thread of a Dask worker, all capped by the CPUs the process may run on.
    ``openmp=False`` leaves out the OpenMP limit, which takes milliseconds
    to read and which torch's own thread count already reflects (both are
    the OpenMP runtime's).
    """
    limits = [_available_cpus(), _env_threads(), _ray_cpus(), _dask_cpus()]
    if openmp:
        limits.append(_threadpoolctl_threads())
    return min(limit for limit in limits if limit is not None)


def _visible_cuda_devices():
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    return [d.strip() for d in visible.split(",") if d.strip()]


def worker_cuda_index():
    """Index of the CUDA device that belongs to this engine worker, or ``None``.

    ``device="auto"`` trains on ``cuda:<index>``:

    - in a Ray task given GPUs, the first of ``ray.get_gpu_ids()``, as
      numbered among the devices this process sees (Ray restricts
      ``CUDA_VISIBLE_DEVICES`` to the task's GPUs unless told not to);
    - in a Dask worker that sees several GPUs (a ``LocalCluster`` does not
      assign them; ``dask-cuda`` does, leaving each worker one), GPU
      ``name % n_gpus`` for a worker named by an integer, as the workers of
      a ``LocalCluster`` are, so that they spread over the GPUs;
    - elsewhere ``None`` (torch's current device).
    """
    ids = _ray_gpu_ids()
    if ids is not None:
        if not ids:
            return None
        visible = _visible_cuda_devices()
        if visible is None:
            return int(ids[0])
        return visible.index(ids[0]) if ids[0] in visible else 0
    worker = _dask_worker()
    if worker is not None and isinstance(worker.name, int):
        n_gpus = torch.cuda.device_count()
        return worker.name % n_gpus if n_gpus > 1 else None
    return None


def check_accelerator(accelerator, mixed_precision):
    """Raise for an estimator's ``accelerator`` it cannot train with."""
    if accelerator is None:
        return
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise ImportError(
            "accelerator= needs the accelerate package: pip install sk-i2m2[accelerate]"
        ) from None
    if mixed_precision:
        raise ValueError(
            "mixed_precision=True with an accelerator: set the accelerator's "
            "mixed_precision (e.g. Accelerator(mixed_precision='bf16')) instead."
        )


def shared_seed(seed, accelerator):
    """``seed`` of the first process of ``accelerator``, the same in every process.

    Every process must draw the same initial weights, validation split and
    batch order, or they would stop at different epochs and wait for each
    other forever.
    """
    if accelerator is None or accelerator.num_processes == 1:
        return seed
    from accelerate.utils import broadcast_object_list

    return int(broadcast_object_list([seed], from_process=0)[0])
