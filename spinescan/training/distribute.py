"""``tf.distribute`` for the training loop: the strategy for ``--strategy``, which process is the
chief, and the Keras patch that multi-worker ``fit`` needs (TensorFlow imported lazily)."""

from __future__ import annotations

import os
import types
from typing import Any

from spinescan.errors import SpineScanError, require_tensorflow
from spinescan.training.config import cluster_workers
from spinescan.training.settings import STRATEGIES


def make_strategy(name: str) -> tuple[Any, str]:
    """The tf.distribute strategy for ``--strategy`` (created before any other TF work, as
    MultiWorkerMirroredStrategy requires)."""
    tf = require_tensorflow()
    if name == "auto":
        if cluster_workers() > 1:
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy(), "default"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), "mirrored"
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise SpineScanError(
                "--strategy multiworker needs TF_CONFIG (cluster and task) in the environment of every worker"
            )
        implementation = (
            tf.distribute.experimental.CommunicationImplementation.NCCL
            if tf.config.list_physical_devices("GPU")
            else tf.distribute.experimental.CommunicationImplementation.RING
        )
        options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options), "multiworker"
    raise SpineScanError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def patch_keras_for_multiworker(model: Any, strategy: Any) -> None:
    """Work around two Keras 3 bugs that break ``fit`` under MultiWorkerMirroredStrategy
    (keras-team/keras#20585, open; TF 2.21 / Keras 3.15 here).

    1. ``fit`` builds its state from a first batch that it ``strategy.reduce``s as one nested
       structure, which the collective strategy cannot do ("Attempt to convert a value
       (PerReplica...)"). Building from this worker's local slice needs no communication.
    2. Each step's logs are reduced with ``strategy.reduce("MEAN", v, axis=0)``, which fails on the
       scalar metric results ("Invalid reduction dimension 0"). Those results come from metric
       variables that are already all-reduced across workers on every update, so the local value
       is the global one: we take it ("first", as Keras does on TPUs).
    """
    tf = require_tensorflow()
    require_tensorflow()
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def local(value: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(local, next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_spinescan_patched", False):
        return

    def reduce_per_replica(values: Any, strategy_: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy_):
            reduction = "first"
        return original(values, strategy_, reduction)

    reduce_per_replica._spinescan_patched = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def worker_role(strategy: Any) -> tuple[bool, int]:
    """(is_chief, worker index). Outside multi-worker training every process is the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return chief, task_id
