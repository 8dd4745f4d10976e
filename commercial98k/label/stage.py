"""The label stage as a ``commercial98k.engine.stage.Stage``: one code path, in this process or as Ray actors.

``LabelStage.setup`` builds the models once per worker (on the device its executor assigned, e.g.
the GPU Ray gave an actor); a batch is labelled with ``label.batch.label_batches`` and each row
records label's result (``label.plan.label_result``), a clip that failed outside them too.
``label_provenance`` gives the provenance columns of a run's models before any clip is labelled,
built where the stage's workers run (on Ray in one cluster task, so the driver loads no model).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from commercial98k.engine.stage import Resources, Stage, worker_device
from commercial98k.label.extractors import LabelConfig
from commercial98k.storage.files import DataRoot

from .batch import LabelOptions

if TYPE_CHECKING:
    from commercial98k.engine.runner import Executor


class LabelStage(Stage):
    """``c98k label``: ``setup`` builds the models once per worker; a batch is labelled with
    ``label_batches`` (frames and texts of several clips together, media decoded by ``decode_threads``)."""

    key, kind = "clip_id", "clips"

    def __init__(self, config: LabelConfig, data_root: str | Path, options: LabelOptions, decode_threads: int = 1,
                 gpus_per_worker: float = 0.0, threads: int | None = None):
        self.config, self.data_root, self.options = config, str(DataRoot(data_root).root), options
        self.decode_threads = max(1, decode_threads)
        self.resources = Resources(num_cpus=1.0, num_gpus=gpus_per_worker)
        self.batch_size = options.clips_per_batch * 4  # the decode of a sub-batch overlaps the previous one's models
        self.threads = threads
        self.models = None

    def setup(self) -> None:
        from commercial98k.label.extractors import models_for
        from commercial98k.storage.feature_store import FeatureStore

        super().setup()
        self.models = models_for(replace(self.config, device=worker_device(self.config.device)))
        self.models.provenance(self.options.frame_fps)  # builds every model now, not inside the first batch
        self.store = FeatureStore(self.data_root)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        from .batch import label_batches
        from .plan import label_result

        return [label_result(r) for r in label_batches(rows, self.models, self.store, self.options,
                                                        self.decode_threads)]

    def failed_rows(self, item: dict, error: str) -> list[dict]:
        from .plan import label_result

        return [label_result(dict(item, status="failed", error=error))]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("models", None)  # built in each worker's setup, never shipped
        state.pop("store", None)
        return state


def _provenance(config: LabelConfig, frame_fps: float = 1.0) -> dict[str, str | None]:
    from commercial98k.label.extractors import models_for

    return models_for(replace(config, device=worker_device(config.device))).provenance(frame_fps)


def label_provenance(stage: LabelStage, executor: Executor) -> dict[str, str | None]:
    """The provenance columns of ``stage``'s models, built once where its workers run (``executor.call``:
    in this process locally, one task with the stage's resources on Ray); a model error is raised as is."""
    return executor.call(_provenance, stage.config, stage.options.frame_fps, stage=stage)
