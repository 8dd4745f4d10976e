"""The split and label stages as ``commercial98k.stage.Stage``s (one code path, local or Ray actors).

Only wiring: the per-item work stays in ``pipelines.split.SplitStep`` and
``pipelines.label.label_rows`` / ``_local_batches``; these classes add ``setup`` (models once per
worker, the device from Ray's GPU assignment), the batch call and the declared resources.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from commercial98k.engine import error_line
from commercial98k.label.clip_features import LabelConfig
from commercial98k.ray_engine import assigned_device
from commercial98k.stage import Resources, Stage


class LabelStage(Stage):
    """``c98k label``: ``setup`` builds the models once per worker; a batch is labelled with
    ``label_rows`` (frames and texts of several clips together, media decoded by ``decode_threads``)."""

    key, kind = "clip_id", "clips"

    def __init__(self, config: LabelConfig, data_root: str | Path, options, decode_threads: int = 1,
                 gpus_per_worker: float = 0.0, threads: int | None = None):
        self.config, self.data_root, self.options = config, str(Path(data_root).resolve()), options
        self.decode_threads = max(1, decode_threads)
        self.resources = Resources(num_cpus=1.0, num_gpus=gpus_per_worker)
        self.batch_size = options.clips_per_batch * 4  # the decode of a sub-batch overlaps the previous one's models
        self.threads = threads
        self.models = None

    def setup(self) -> None:
        from commercial98k.features import FeatureStore
        from commercial98k.label.clip_features import models_for

        super().setup()
        self.models = models_for(replace(self.config, device=assigned_device(self.config.device)))
        self.models.provenance(self.options.frame_fps)  # builds every model now, not inside the first batch
        self.store = FeatureStore(self.data_root)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        from pipelines.label import _local_batches, label_result

        return [label_result(r) for r in _local_batches(rows, self.models, self.store, self.options,
                                                         self.decode_threads)]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("models", None)  # built in each worker's setup, never shipped
        state.pop("store", None)
        return state


class SplitStage(Stage):
    """``c98k split``: one video in, its clip rows (or its ``<video_id>-none`` row) out."""

    key, kind = "clip_id", "clips"

    def __init__(self, config, cpus_per_worker: float = 1.0, threads: int | None = None):
        self.config = config
        self.resources = Resources(num_cpus=cpus_per_worker)
        self.batch_size = 1
        self.threads = threads

    def setup(self) -> None:
        from commercial98k.split.music import get_detector

        super().setup()
        get_detector()  # YAMNet once per worker

    def process_batch(self, rows: list[dict]) -> list[dict]:
        from pipelines.split import SplitStep

        step = SplitStep(self.config)
        out: list[dict] = []
        for item in rows:
            try:
                out.extend(step(item)["rows"])
            except Exception as e:  # SplitStep catches its own errors; a bug must still not stop the run
                out.extend(self.failed_rows(item, error_line(e)))
        return out

    def failed_rows(self, item: dict, error: str) -> list[dict]:
        from pipelines.split import VIDEO_COLUMNS, none_clip_id

        row = {k: item.get(k) for k in VIDEO_COLUMNS}
        row.update(clip_id=none_clip_id(item["video_id"]), status="failed", error=error)
        return [row]


def _provenance(config: LabelConfig, frame_fps: float = 1.0) -> dict[str, str | None]:
    from commercial98k.label.clip_features import models_for

    return models_for(replace(config, device=assigned_device(config.device))).provenance(frame_fps)


def label_provenance(config: LabelConfig, engine: str, address: str | None = None,
                     gpus_per_worker: float = 0.0, frame_fps: float = 1.0) -> tuple[dict[str, str | None], bool]:
    """(the provenance columns of this run's models, whether Ray was started here).

    Locally the models are built in this process (the worker). On Ray they are built by one task
    on the cluster, so the driver loads no model; a model error comes back as its own exception.
    """
    if engine != "ray":
        return _provenance(config, frame_fps), False
    import ray

    from commercial98k.ray_engine import check_gpus, connect

    started = connect(address)
    if gpus_per_worker:
        try:
            check_gpus(gpus_per_worker)
        except RuntimeError:
            if started:
                ray.shutdown()
            raise
    task = ray.remote(_provenance).options(num_cpus=1, num_gpus=gpus_per_worker, max_retries=1)
    try:
        return ray.get(task.remote(config, frame_fps)), started
    except ray.exceptions.RayTaskError as e:
        if started:
            ray.shutdown()
        cause = getattr(e, "cause", None)
        raise (cause if isinstance(cause, Exception) else e) from None
