"""Checkpointing with orbax: the whole train state, the data iterator's
position and the config, so ``--workdir`` with a checkpoint resumes."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxmetric.train.state import TrainState


class Checkpointer:
    """An orbax ``CheckpointManager`` in ``<workdir>/checkpoints``."""

    def __init__(self, workdir: str, keep: int = 2) -> None:
        self.manager = ocp.CheckpointManager(
            os.path.abspath(os.path.join(workdir, "checkpoints")),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(
        self,
        step: int,
        state: TrainState,
        data_state: dict[str, Any],
        config: ml_collections.ConfigDict,
    ) -> None:
        """Saves (state, data iterator state, config) at ``step``; blocks until
        written so a crash right after still leaves a usable checkpoint."""
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state),
                config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
            ),
        )
        self.manager.wait_until_finished()

    def restore(
        self, abstract_state: TrainState, step: int | None = None
    ) -> tuple[TrainState, dict]:
        """(state, data iterator state) of ``step`` (default: the latest).

        ``abstract_state`` gives shapes, dtypes and the shardings to restore
        onto, which may differ from the ones saved (another device count).
        """
        step = self.manager.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
            ),
        )
        return out.state, out.data

    def close(self) -> None:
        self.manager.close()
