"""Checkpointing with orbax: the whole train state, the data iterator's
position and the config, so ``--workdir`` with a checkpoint resumes.

Crash safety comes from orbax: a step is written into a temporary directory
(``<step>.orbax-checkpoint-tmp-*``) and renamed to ``<step>`` only once every
file is on disk, and ``latest_step`` only sees renamed (finalised) steps. A
process killed during a save therefore leaves at most a temporary directory,
which is ignored (and deleted) on restart; the run resumes from the step
before. A finalised step that later became unreadable (a truncated or deleted
file) raises ``CheckpointError`` naming the step, never a raw tensorstore
trace.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxmetric.train import methods
from jaxmetric.train.state import TrainState

# Config fields that may differ between a run and its resumption: they change
# how long the run is, where it runs or what it logs, not what it computes.
RESUMABLE_FIELDS = (
    "allow_config_change",
    "checkpoint_every",
    "data",  # the pipeline's state is the step, whatever its workers
    "dataset.data_dir",
    "eval",
    "eval_every",
    "keep_checkpoints",
    "log_every",
    "max_consecutive_skipped",
    "multihost",
    "nan_guard",
    "num_devices",
    "num_steps",
)


def unused_method_blocks(config: dict) -> tuple[str, ...]:
    """The config blocks of the methods other than ``config["method"]``: they
    do not change what a run computes (and a method added since a checkpoint
    was written must not make it unresumable)."""
    return tuple(m for m in methods.names() if m != config.get("method"))


def not_in_step(config: dict) -> tuple[str, ...]:
    """Fields of a config dict that do not change what a train step
    computes: those a resumed run may change, except the ones the step reads,
    the seed (state, not code) and the other methods' blocks."""
    resumable = tuple(f for f in RESUMABLE_FIELDS if f not in ("nan_guard", "num_steps"))
    return resumable + ("seed",) + unused_method_blocks(config)


class CheckpointError(RuntimeError):
    """A checkpoint in the workdir cannot be used (unreadable, or written by
    another config)."""


class ConfigMismatchError(CheckpointError, ValueError):
    """The workdir's checkpoint was written by a different config."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def config_differences(saved: dict, current: dict) -> list[str]:
    """Fields (dotted names) whose value differs between two config dicts,
    leaving out ``RESUMABLE_FIELDS``, the blocks of methods the current
    config does not run, and everything under them. A field that a
    checkpoint from an older version lacks counts as its default (so a run
    resumes after an upgrade that added a field, unless it sets that field
    to something else)."""
    from jaxmetric.train.config import base_config

    skip = RESUMABLE_FIELDS + unused_method_blocks(current)

    def ignored(name: str) -> bool:
        return any(name == f or name.startswith(f + ".") for f in skip)

    a, b = _flatten(saved), _flatten(current)
    defaults = _flatten(config_to_dict(base_config()))
    names = sorted(n for n in set(a) | set(b) if not ignored(n))
    missing = object()
    diffs = []
    for name in names:
        old, new = a.get(name, defaults.get(name, missing)), b.get(name, missing)
        if old != new:
            old = "(absent)" if old is missing else repr(old)
            new = "(absent)" if new is missing else repr(new)
            diffs.append(f"`{name}`: {old} in the checkpoint, {new} now")
    return diffs


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    """The config as the JSON dict that a checkpoint stores."""
    return json.loads(config.to_json_best_effort())


class Checkpointer:
    """An orbax ``CheckpointManager`` in ``<workdir>/checkpoints``."""

    def __init__(self, workdir: str, keep: int = 2) -> None:
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                create=True,
                # Temporary directories of saves that a crash interrupted.
                cleanup_tmp_directories=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def _unreadable(self, step: int, err: Exception) -> CheckpointError:
        earlier = [s for s in self.all_steps() if s < step]
        hint = (
            f"delete {os.path.join(self.directory, str(step))} to resume from step {earlier[-1]}"
            if earlier
            else "delete it, or use a new --workdir"
        )
        return CheckpointError(
            f"The checkpoint of step {step} in {self.directory} cannot be read (corrupt, "
            "truncated or written by an incompatible version: "
            f"{type(err).__name__}: {err}); {hint}."
        )

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
                config=ocp.args.JsonSave(config_to_dict(config)),
            ),
        )
        self.manager.wait_until_finished()

    def saved_config(self, step: int | None = None) -> dict:
        """The config dict stored with ``step`` (default: the latest)."""
        step = self.manager.latest_step() if step is None else step
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        except Exception as err:  # noqa: BLE001 - any read failure is a bad checkpoint
            raise self._unreadable(step, err) from err
        return out.config

    def check_config(self, config: ml_collections.ConfigDict, step: int | None = None) -> None:
        """Raises ``ConfigMismatchError`` when the checkpoint was written by
        another config (fields outside ``RESUMABLE_FIELDS``), unless
        ``config.allow_config_change``."""
        step = self.manager.latest_step() if step is None else step
        diffs = config_differences(self.saved_config(step), config_to_dict(config))
        if diffs and not config.allow_config_change:
            raise ConfigMismatchError(
                f"The checkpoint of step {step} in {self.directory} was written by another "
                "config: " + "; ".join(diffs) + ". Use a new --workdir, or pass "
                "--config.allow_config_change=True to resume with the new config."
            )

    def restore(
        self, abstract_state: TrainState, step: int | None = None
    ) -> tuple[TrainState, dict]:
        """(state, data iterator state) of ``step`` (default: the latest).

        ``abstract_state`` gives shapes, dtypes and the shardings to restore
        onto, which may differ from the ones saved (another device count).
        Raises ``CheckpointError`` naming the step if it cannot be read.
        """
        step = self.manager.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
                ),
            )
        except Exception as err:  # noqa: BLE001 - any read failure is a bad checkpoint
            raise self._unreadable(step, err) from err
        return out.state, out.data

    def close(self) -> None:
        self.manager.close()
