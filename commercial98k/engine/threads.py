"""Per-worker thread limits: N workers on C cores get C // N threads each, not C each.

Every library that runs a worker's models keeps its own thread pool: torch (intra- and
inter-op), onnxruntime sessions, OpenCV, and the BLAS/OpenMP pools under numpy. Left alone,
each of N workers uses all C cores and the machine runs N x C threads. ``set_worker_threads(n)``
caps all of them in the calling process; call it once per worker process (a Ray actor's
``__init__``, a pool initializer, a stage's ``setup()``) *before* its models are built, since
onnxruntime reads ``worker_threads()`` when a session is created.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

#: Environment variables read by OpenMP/BLAS pools (and by child processes).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")

_current: int | None = None


def cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, total: int | None = None) -> int:
    """``total`` (default: ``cores()``) divided among ``workers``, at least 1 each."""
    return max(1, (total or cores()) // max(1, int(workers)))


def set_worker_threads(n: int) -> dict[str, int]:
    """Cap torch, onnxruntime (sessions built afterwards), OpenCV and BLAS/OpenMP at ``n`` threads.

    Returns what was set, e.g. ``{"torch": 2, "torch_interop": 1, "opencv": 2, "blas": 2, "onnxruntime": 2}``.
    Safe to call more than once; torch's inter-op pool can only be sized before its first use,
    so that one is left as it is when it already runs.
    """
    global _current
    n = max(1, int(n))
    _current = n
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    done: dict[str, int] = {"onnxruntime": n}
    try:
        import torch

        torch.set_num_threads(n)
        done["torch"] = torch.get_num_threads()
        with contextlib.suppress(RuntimeError):  # the inter-op pool already started
            torch.set_num_interop_threads(1)
        done["torch_interop"] = torch.get_num_interop_threads()
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(n)
        done["opencv"] = cv2.getNumThreads()
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
        done["blas"] = n
    except ImportError:
        pass
    return done


def worker_threads(default: int | None = None) -> int:
    """The limit set by ``set_worker_threads`` (else ``default``, else ``OMP_NUM_THREADS``, else all cores)."""
    if _current is not None:
        return _current
    if default is not None:
        return default
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else cores()


def ort_session_options(threads: int | None = None):
    """``onnxruntime.SessionOptions`` with ``threads`` (default ``worker_threads()``) intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or worker_threads()
    opts.inter_op_num_threads = 1
    return opts


@contextlib.contextmanager
def restored_thread_limits() -> Iterator[None]:
    """Undo, on exit, every limit ``set_worker_threads`` (or torch/OpenCV/BLAS calls) set inside the block.

    Restores the ``THREAD_ENV`` variables, ``worker_threads()``, torch's intra-op threads,
    OpenCV's threads and the BLAS/OpenMP pools (threadpoolctl), so work that used to run in its
    own process can run in this one without leaving its limits behind.
    """
    global _current
    saved_env = {var: os.environ.get(var) for var in THREAD_ENV}
    saved_current = _current
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    cv2 = sys.modules.get("cv2")
    cv2_threads = cv2.getNumThreads() if cv2 is not None else None
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        threadpool_info = threadpool_limits = None
    pools = threadpool_info() if threadpool_info is not None else None
    try:
        yield
    finally:
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        _current = saved_current
        torch = sys.modules.get("torch")
        if torch is not None:
            omp = saved_env["OMP_NUM_THREADS"] or ""  # a new process's torch default
            torch.set_num_threads(torch_threads or (int(omp) if omp.isdigit() and int(omp) > 0 else cores()))
        cv2 = sys.modules.get("cv2")
        if cv2 is not None and cv2_threads is not None:
            cv2.setNumThreads(cv2_threads)
        if threadpool_limits is not None and pools is not None:
            threadpool_limits(limits=pools)
