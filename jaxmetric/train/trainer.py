"""The training loop: data -> sharded steps -> logs, checkpoints, evaluation.

``train_and_evaluate(config, workdir)`` is what ``jaxmetric train`` runs; it
follows Flax's ``examples/imagenet/train.py``: build the mesh, the data
iterator, the model and train state (restored from ``workdir`` when a
checkpoint exists), loop over jitted steps, then evaluate and write
``metrics.json``, TensorBoard events and a loss-curve PNG to ``workdir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmetric.data import input_pipeline, sources
from jaxmetric.train import evaluate, methods
from jaxmetric.train.checkpoint import Checkpointer, config_to_dict, not_in_step
from jaxmetric.train.config import validate_config
from jaxmetric.train.optim import make_optimizer
from jaxmetric.train.state import AXIS, TrainState, create_train_state, make_mesh
from jaxmetric.train.steps import make_embed_fn, make_train_step

# Called after every step with the number of steps done (as Flax's periodic
# actions): progress reports, profiling, a test that kills the process.
Hook = Callable[[int], None]


class NonFiniteStepsError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


# What `jaxmetric train` exits with when preempted (sysexits' EX_TEMPFAIL:
# "try again"): the checkpoint of the last step is saved, rerun to resume.
PREEMPTED_EXIT_CODE = 75


class PreemptedError(RuntimeError):
    """The run got SIGTERM (a preemptible / spot VM about to stop); the
    checkpoint of the step it stopped at is saved."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class _Preemption:
    """SIGTERM sets a flag; the loop reads it at a step boundary, where every
    process agrees on it (any process that got the signal stops them all)."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self):
        # Signal handlers can only be set from the main thread; elsewhere
        # (a notebook's worker thread) SIGTERM keeps its default action.
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _handle(self, signum, frame) -> None:
        del signum, frame
        self.requested = True

    def agreed(self) -> bool:
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray(self.requested))
        return bool(np.any(flags))


def _make_iterator(config: ml_collections.ConfigDict, train: sources.Split):
    """The training batches: shuffled (or class-balanced) record indices,
    read and transformed by the input pipeline's workers."""
    method = methods.get(config.method)
    if method.class_balanced:
        indices = input_pipeline.class_balanced_index_batches(
            train.y,
            config.batch_size,
            samples_per_class=config[method.name].samples_per_class,
            seed=config.seed,
        )
    else:
        indices = input_pipeline.shuffled_indices(len(train), config.batch_size, seed=config.seed)
    return input_pipeline.batches(
        train,
        indices,
        seed=config.seed,
        transform=input_pipeline.train_transform(config, num_views=2 if method.two_views else 1),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        workers=config.data.workers,
        prefetch=config.data.prefetch,
        skip_corrupt=config.data.skip_corrupt,
    )


_STEP_CACHE: dict[Any, Any] = {}
_STEP_CACHE_SIZE = 4


def _train_step(config: ml_collections.ConfigDict, graphdef, tx, mesh):
    """``make_train_step``, memoised per (config, model structure, mesh): a
    process that trains the same config again (a resumed run, the tests, a
    notebook) reuses the compiled step instead of compiling it again. The
    cached step closes over the optimizer of its first call, which the
    config determines."""
    fields = config_to_dict(config)
    for name in not_in_step(fields):
        fields.pop(name, None)
    try:
        key = (json.dumps(fields, sort_keys=True), graphdef, mesh)
        hash(key)
    except TypeError:
        return make_train_step(config, graphdef, tx, mesh)
    if key not in _STEP_CACHE:
        if len(_STEP_CACHE) >= _STEP_CACHE_SIZE:
            _STEP_CACHE.pop(next(iter(_STEP_CACHE)))
        _STEP_CACHE[key] = make_train_step(config, graphdef, tx, mesh)
    return _STEP_CACHE[key]


def _global_batch(mesh, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """This process's rows -> global arrays sharded over ``"data"``."""
    sharding = NamedSharding(mesh, P(AXIS))
    return (
        jax.make_array_from_process_local_data(sharding, x),
        jax.make_array_from_process_local_data(sharding, y),
    )


def evaluate_state(
    config: ml_collections.ConfigDict,
    embed,
    state: TrainState,
    train: sources.Split,
    test: sources.Split,
    *,
    linear_probe: bool = True,
) -> dict[str, float]:
    """``evaluate.run_metrics`` of ``state`` on the splits (fractions in [0, 1])."""
    emb = evaluate.embed_splits(config, embed, state, train, test)
    return evaluate.run_metrics(config, emb, linear_probe=linear_probe)


def _log_table(config, results: dict[str, float], baseline: dict[str, float]) -> str:
    ref = config.eval.reference
    rows = [("metric", "this run", f"reference ({ref.name})" if ref.name else "reference")]

    def pct(v):
        return f"{100 * v:.1f}%" if v is not None and v >= 0 else "-"

    names = {
        "linear_probe_accuracy": "linear probe, encoder features",
        "knn_accuracy": f"kNN (k={config.eval.knn_k}, cosine), embeddings",
        "knn_accuracy_features": f"kNN (k={config.eval.knn_k}, cosine), encoder features",
        "map_at_r": "MAP@R (held-out, leave-one-out)",
        "precision_at_1": "precision@1 (held-out)",
        "r_precision": "R-precision (held-out)",
    }
    for key, label in names.items():
        if key in results:
            rows.append((label, pct(results[key]), pct(ref.get(key, -1.0))))
    for key, value in baseline.items():
        rows.append((key, pct(value), pct(ref.get(key, -1.0))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _save_loss_png(workdir: str, history: list[tuple[int, float]], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = os.path.join(workdir, "loss.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history:
        steps, losses = zip(*history, strict=True)
        ax.plot(steps, losses)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _read_history(path: str) -> list[tuple[int, float]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [tuple(json.loads(line)) for line in f if line.strip()]


def _truncate_history(path: str, step: int) -> None:
    """Drops the loss-log lines after ``step``: a run killed after logging
    but before its next checkpoint logs those steps again when it resumes.
    A torn last line (killed mid-write) is dropped too."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry[0] <= step:
                keep.append(json.dumps(entry) + "\n")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(keep)
    os.replace(tmp, path)


@dataclasses.dataclass
class _Run:
    """What ``_setup`` builds for the loop and the end of a run."""

    config: ml_collections.ConfigDict
    workdir: str
    mesh: jax.sharding.Mesh
    is_main: bool
    ckpt: Checkpointer
    train: sources.Split
    test: sources.Split
    schedule: Any
    state: TrainState
    iterator: Any
    step_fn: Any
    embed: Any
    writer: Any
    history_path: str
    corrupt: int = 0  # undecodable records skipped by this process (data.skip_corrupt)


def default_compilation_cache_dir() -> str:
    """Where the trainer keeps compiled programs between runs:
    ``$XDG_CACHE_HOME/jaxmetric/xla`` (``~/.cache/jaxmetric/xla``)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "jaxmetric", "xla")


def _use_compilation_cache() -> None:
    """Turns on JAX's persistent compilation cache in
    ``default_compilation_cache_dir()``, unless a directory is set already
    (``JAX_COMPILATION_CACHE_DIR`` / ``jax_compilation_cache_dir``) or the
    cache is switched off (``JAX_ENABLE_COMPILATION_CACHE=false``). A run
    that compiles a step another run compiled before (another seed, a
    restart, the evaluation) loads it instead: keys are the program, the
    compile options, the devices and the jax version, so a stale entry is
    never used. Programs that compile in under a second are not kept
    (``jax_persistent_cache_min_compile_time_secs``)."""
    if jax.config.jax_compilation_cache_dir or not jax.config.jax_enable_compilation_cache:
        return
    jax.config.update("jax_compilation_cache_dir", default_compilation_cache_dir())


def _setup(config: ml_collections.ConfigDict, workdir: str) -> _Run:
    """Validates the config, then builds the mesh, data, model, state
    (restored from the workdir's latest checkpoint) and the jitted step."""
    if config.multihost:
        jax.distributed.initialize()
    mesh = make_mesh(config.num_devices)
    validate_config(config, mesh.size, jax.process_count())
    _use_compilation_cache()
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    ckpt = Checkpointer(workdir, config.keep_checkpoints)
    if ckpt.latest_step() is not None:
        # Before any data is loaded or anything compiled: a workdir of another
        # run must not be silently continued with this config.
        ckpt.check_config(config)

    train, test = sources.load(config.dataset)
    tx, schedule = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
    graphdef, state = create_train_state(config, input_pipeline.input_shape(config, train), tx)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    iterator = _make_iterator(config, train)

    history_path = os.path.join(workdir, "losses.jsonl")
    if ckpt.latest_step() is not None:
        state, data_state = ckpt.restore(state)
        iterator.set_state(data_state)
        if is_main:
            _truncate_history(history_path, int(state.step))
        print(f"Resumed from {workdir} at step {int(state.step)}.", file=sys.stderr)
    elif is_main and os.path.exists(history_path):
        os.remove(history_path)  # From a run that died before its first checkpoint.

    writer = None
    if is_main:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
    return _Run(
        config=config,
        workdir=workdir,
        mesh=mesh,
        is_main=is_main,
        ckpt=ckpt,
        train=train,
        test=test,
        schedule=schedule,
        state=state,
        iterator=iterator,
        step_fn=_train_step(config, graphdef, tx, mesh),
        embed=make_embed_fn(config, graphdef),
        writer=writer,
        history_path=history_path,
    )


def _diverged(run: _Run, done: int, bad_run: int) -> NonFiniteStepsError:
    last = run.ckpt.latest_step()
    where = (
        f"the last good checkpoint is step {last} in {run.ckpt.directory}"
        if last is not None
        else "no checkpoint was written"
    )
    return NonFiniteStepsError(
        f"Stopped at step {done}: {bad_run} consecutive steps had a non-finite loss "
        f"or gradient (`max_consecutive_skipped`={run.config.max_consecutive_skipped}; "
        f"{int(run.state.skipped)} skipped in all); {where}. Lower the learning rate or "
        "check the data, then rerun to resume from it."
    )


def _preempted(run: _Run, done: int) -> PreemptedError:
    last = run.ckpt.latest_step()
    return PreemptedError(
        f"Preempted (SIGTERM) at step {done}/{run.config.num_steps}; the checkpoint of "
        f"step {last} is in {run.ckpt.directory}. Rerun with the same --workdir to resume.",
        step=done,
    )


def _log(run: _Run, done: int, loss: float, throughput: float, progress: bool, bar) -> None:
    skipped = int(run.state.skipped)
    bar.set_postfix(
        loss=f"{loss:.4f}",
        ex_per_s=f"{throughput:.0f}",
        **({"corrupt": run.corrupt} if run.corrupt else {}),
    )
    if not run.is_main:
        return
    run.writer.add_scalar("train/loss", loss, done)
    run.writer.add_scalar("train/learning_rate", float(run.schedule(done - 1)), done)
    run.writer.add_scalar("train/examples_per_second", throughput, done)
    run.writer.add_scalar("train/skipped_steps", skipped, done)
    run.writer.add_scalar("train/corrupt_records", run.corrupt, done)
    with open(run.history_path, "a") as f:
        f.write(json.dumps([done, loss]) + "\n")
    if not progress:
        print(
            f"step {done}/{run.config.num_steps} loss {loss:.4f} {throughput:.0f} examples/s"
            + (f" ({skipped} non-finite steps skipped)" if skipped else "")
            + (f" ({run.corrupt} corrupt records skipped)" if run.corrupt else ""),
            file=sys.stderr,
        )


def _loop(
    run: _Run, end: int, hooks: Sequence[Hook], progress: bool, preemption: _Preemption
) -> int:
    """Steps from the state's step to ``end``: logs, the kNN monitor and
    periodic checkpoints; returns the length of the final run of non-finite
    steps. Raises NonFiniteStepsError after ``max_consecutive_skipped``, and
    PreemptedError (after saving this step's checkpoint) on SIGTERM."""
    from tqdm.auto import tqdm

    config = run.config
    start = int(run.state.step)
    bar = tqdm(
        total=config.num_steps,
        initial=start,
        disable=not (progress and run.is_main),
        desc=config.method,
        mininterval=0.5,
    )
    t_last, n_last = time.perf_counter(), start
    max_bad = config.max_consecutive_skipped
    bad_run = 0

    def next_batch():
        """The next global batch, on the devices, and the data iterator's
        state after it (what a checkpoint after this batch's step saves)."""
        batch = next(run.iterator)
        run.corrupt += int(batch["corrupt"])
        return _global_batch(run.mesh, batch["x"], batch["y"]), run.iterator.get_state()

    batch = next_batch() if start < end else None
    try:
        for step in range(start, end):
            (x, y), data_state = batch
            run.state, metrics = run.step_fn(run.state, x, y)
            done = step + 1
            # The next batch is read and sent while the devices run this step,
            # before the host waits for the step below.
            if done < end:
                batch = next_batch()
            bar.update(1)
            # One scalar read per step (a host sync) to stop a diverged run early.
            bad_run = int(run.state.consecutive_skipped) if (max_bad or not config.nan_guard) else 0
            if max_bad and bad_run >= max_bad:
                raise _diverged(run, done, bad_run)
            if done % config.log_every == 0 or done == end:
                now = time.perf_counter()
                throughput = (done - n_last) * config.batch_size / max(now - t_last, 1e-9)
                t_last, n_last = now, done
                _log(run, done, float(metrics["loss"]), throughput, progress, bar)
            if config.eval_every and done % config.eval_every == 0 and done < config.num_steps:
                monitor = evaluate_state(
                    config, run.embed, run.state, run.train, run.test, linear_probe=False
                )
                if run.is_main:
                    run.writer.add_scalar("eval/knn_accuracy", monitor["knn_accuracy"], done)
                    bar.write(f"step {done}: kNN monitor {100 * monitor['knn_accuracy']:.1f}%")
            # No checkpoint in the middle of a run of bad steps: with a rotating
            # max_to_keep it could push out the last good one.
            saved = (
                config.checkpoint_every
                and done % config.checkpoint_every == 0
                and done < end
                and not bad_run
            )
            if saved:
                run.ckpt.save(done, run.state, data_state, config)
            for hook in hooks:
                hook(done)
            if done < end and preemption.agreed():
                if not saved and not bad_run:
                    run.ckpt.save(done, run.state, data_state, config)
                raise _preempted(run, done)
    finally:
        bar.close()
    return bad_run


def _finish(run: _Run, start: int, end: int, bad_run: int, run_eval: bool) -> dict[str, Any]:
    """The final checkpoint, then (at ``num_steps``) the evaluation:
    ``metrics.json``, TensorBoard scalars, ``loss.png`` and the log table."""
    config, state = run.config, run.state
    if (end > start or run.ckpt.latest_step() is None) and (config.nan_guard or not bad_run):
        run.ckpt.save(end, state, run.iterator.get_state(), config)
    results: dict[str, Any] = {"step": int(state.step)}
    if int(state.skipped):
        print(
            f"Warning: {int(state.skipped)} steps had a non-finite loss or gradient "
            "and were skipped.",
            file=sys.stderr,
        )
    if not (run_eval and int(state.step) == config.num_steps):
        return results
    emb = evaluate.embed_splits(config, run.embed, state, run.train, run.test)
    results.update(evaluate.run_metrics(config, emb, linear_probe=config.eval.linear_probe))
    baseline = evaluate.raw_baseline(config, emb)
    if run.is_main:
        for key, value in results.items():
            if key != "step":
                run.writer.add_scalar(f"eval/{key}", value, int(state.step))
        with open(os.path.join(run.workdir, "metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        _save_loss_png(run.workdir, _read_history(run.history_path), f"{config.method} loss")
        print(_log_table(config, results, baseline))
    return results


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    stop_after: int | None = None,
    run_eval: bool = True,
    progress: bool | None = None,
    hooks: Sequence[Hook] = (),
) -> tuple[TrainState, dict[str, Any]]:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint)
    and evaluates the result.

    Args:
      config: a validated-on-entry ConfigDict (see ``configs/``).
      workdir: output directory: checkpoints/, tensorboard/, losses.jsonl,
        loss.png, metrics.json.
      stop_after: stop (with a checkpoint) once this many steps are done in
        total, as if interrupted; the next call resumes.
      run_eval: run the end-of-run evaluation and write metrics.json.
      progress: show a progress bar (default: when stderr is a terminal).
      hooks: callables ``hook(steps_done)`` run after every step, once its
        logging and checkpointing are done (as Flax's periodic actions).

    Returns:
      (final train state, metrics dict).

    Raises:
      ValueError: a bad config field (before anything is built or compiled).
      jaxmetric.train.checkpoint.ConfigMismatchError: ``workdir`` holds a
        checkpoint of another config (and ``config.allow_config_change`` is
        False).
      jaxmetric.train.checkpoint.CheckpointError: the latest checkpoint is
        unreadable (the message names its step).
      NonFiniteStepsError: ``config.max_consecutive_skipped`` steps in a row
        had a non-finite loss or gradient; the checkpoints before them are
        kept.
      PreemptedError: the process (or, multi-host, any process) got SIGTERM;
        the run stopped at the next step boundary after saving its
        checkpoint, and the next call resumes from it (bitwise as if never
        stopped). ``jaxmetric train`` then exits with status
        ``PREEMPTED_EXIT_CODE`` (75).
    """
    run = _setup(config, workdir)
    start = int(run.state.step)
    end = config.num_steps if stop_after is None else min(stop_after, config.num_steps)
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        with _Preemption().installed() as preemption:
            bad_run = _loop(run, end, hooks, progress, preemption)
        results = _finish(run, start, end, bad_run, run_eval)
    finally:
        run.iterator.close()
        run.ckpt.close()
        if run.writer is not None:
            run.writer.close()
    return run.state, results
