"""The training loop: data -> sharded steps -> logs, checkpoints, evaluation.

``train_and_evaluate(config, workdir)`` is what ``jaxmetric train`` runs; it
follows Flax's ``examples/imagenet/train.py``: build the mesh, the data
iterator, the model and train state (restored from ``workdir`` when a
checkpoint exists), loop over jitted steps, then evaluate and write
``metrics.json``, TensorBoard events and a loss-curve PNG to ``workdir``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmetric.data import input_pipeline, sources
from jaxmetric.train import evaluate
from jaxmetric.train.checkpoint import RESUMABLE_FIELDS, Checkpointer, config_to_dict
from jaxmetric.train.config import validate_config
from jaxmetric.train.optim import make_optimizer
from jaxmetric.train.state import AXIS, TrainState, create_train_state, make_mesh
from jaxmetric.train.steps import make_embed_fn, make_train_step

# Test hook (tests/test_crash_safety.py): seconds to sleep after each step, so
# that a test can kill the process in the middle of a run.
STEP_SLEEP_ENV = "JAXMETRIC_TEST_STEP_SLEEP"


class NonFiniteStepsError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


def _make_iterator(config: ml_collections.ConfigDict, train: sources.Split):
    kwargs = {
        "seed": config.seed,
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
    }
    if config.method == "supervised":
        return input_pipeline.class_balanced_batches(
            train.y,
            config.batch_size,
            samples_per_class=config.supervised.samples_per_class,
            **kwargs,
        )
    return input_pipeline.shuffled_batches(len(train), config.batch_size, **kwargs)


# Fields that do not change what a train step computes: those a resumed run
# may change, except the ones the step reads, and the seed (state, not code).
_NOT_IN_STEP = tuple(f for f in RESUMABLE_FIELDS if f not in ("nan_guard", "num_steps")) + ("seed",)
_STEP_CACHE: dict[Any, Any] = {}
_STEP_CACHE_SIZE = 4


def _train_step(config: ml_collections.ConfigDict, graphdef, tx, mesh):
    """``make_train_step``, memoised per (config, model structure, mesh): a
    process that trains the same config again (a resumed run, the tests, a
    notebook) reuses the compiled step instead of compiling it again. The
    cached step closes over the optimizer of its first call, which the
    config determines."""
    fields = config_to_dict(config)
    for name in _NOT_IN_STEP:
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
    """kNN (k=``eval.knn_k``, cosine, on the embeddings z), linear probe (on
    the encoder features h) and, if asked, retrieval metrics on the held-out
    split. Fractions in [0, 1]."""
    ev = config.eval
    h_tr, z_tr, y_tr = embed_split = evaluate.embed_split(
        embed, state.params, state.batch_stats, train, ev.batch_size, ev.max_examples
    )
    del embed_split
    h_te, z_te, y_te = evaluate.embed_split(
        embed, state.params, state.batch_stats, test, ev.batch_size, ev.max_examples
    )
    out = {"knn_accuracy": evaluate.knn_accuracy(z_tr, y_tr, z_te, y_te, k=ev.knn_k)}
    if linear_probe:
        out["linear_probe_accuracy"] = evaluate.linear_probe_accuracy(h_tr, y_tr, h_te, y_te)
        # kNN on the encoder features too (solo-learn reports both spaces).
        out["knn_accuracy_features"] = evaluate.knn_accuracy(h_tr, y_tr, h_te, y_te, k=ev.knn_k)
    if ev.retrieval:
        out.update(evaluate.retrieval_metrics(z_te, y_te))
    return out


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


def _raw_baseline(config, train: sources.Split, test: sources.Split) -> dict[str, float]:
    """Raw-input baselines on the bundled sets (as the MNIST-1D notebook:
    kNN k=10, Euclidean, on raw signals; MAP@R on raw pixels)."""
    if config.dataset.name == "tfds":
        return {}
    x_tr = np.asarray(train.x).reshape(len(train), -1)
    x_te = np.asarray(test.x).reshape(len(test), -1)
    out = {}
    if config.method == "supervised" and config.eval.retrieval:
        out["raw-input MAP@R"] = evaluate.retrieval_metrics(x_te, test.y)["map_at_r"]
    else:
        out["raw-input kNN (k=10)"] = evaluate.knn_accuracy(
            x_tr, train.y, x_te, test.y, k=10, metric="euclidean"
        )
    return out


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


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    stop_after: int | None = None,
    run_eval: bool = True,
    progress: bool | None = None,
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
    """
    if config.multihost:
        jax.distributed.initialize()
    mesh = make_mesh(config.num_devices)
    validate_config(config, mesh.size, jax.process_count())
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    ckpt = Checkpointer(workdir, config.keep_checkpoints)
    if ckpt.latest_step() is not None:
        # Before any data is loaded or anything compiled: a workdir of another
        # run must not be silently continued with this config.
        ckpt.check_config(config)

    train, test = sources.load(config.dataset)
    tx, schedule = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
    graphdef, state = create_train_state(config, train.example_shape, tx)
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

    step_fn = _train_step(config, graphdef, tx, mesh)
    embed = make_embed_fn(config, graphdef)
    writer = None
    if is_main:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

    start = int(state.step)
    end = config.num_steps if stop_after is None else min(stop_after, config.num_steps)
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.num_steps,
        initial=start,
        disable=not (progress and is_main),
        desc=config.method,
        mininterval=0.5,
    )
    t_last, n_last = time.perf_counter(), start
    guard = config.get("nan_guard", True)
    max_bad = config.get("max_consecutive_skipped", 0)
    bad_run = 0
    step_sleep = float(os.environ.get(STEP_SLEEP_ENV, 0) or 0)

    def next_batch():
        """The next global batch, on the devices, and the data iterator's
        state after it (what a checkpoint after this batch's step saves)."""
        x, y = train.take(next(iterator))
        return _global_batch(mesh, x, y), iterator.get_state()

    batch = next_batch() if start < end else None
    for step in range(start, end):
        if step_sleep:
            time.sleep(step_sleep)
        (x, y), data_state = batch
        state, metrics = step_fn(state, x, y)
        done = step + 1
        # The next batch is read and sent while the devices run this step,
        # before the host waits for the step below.
        if done < end:
            batch = next_batch()
        bar.update(1)
        # One scalar read per step (a host sync) to stop a diverged run early.
        bad_run = int(state.consecutive_skipped) if (max_bad or not guard) else 0
        if max_bad and bad_run >= max_bad:
            bar.close()
            last = ckpt.latest_step()
            where = (
                f"the last good checkpoint is step {last} in {ckpt.directory}"
                if last is not None
                else "no checkpoint was written"
            )
            ckpt.close()
            if writer is not None:
                writer.close()
            raise NonFiniteStepsError(
                f"Stopped at step {done}: {bad_run} consecutive steps had a non-finite loss "
                f"or gradient (`max_consecutive_skipped`={max_bad}; {int(state.skipped)} "
                f"skipped in all); {where}. Lower the learning rate or check the data, "
                "then rerun to resume from it."
            )
        if done % config.log_every == 0 or done == end:
            loss = float(metrics["loss"])
            skipped = int(state.skipped)
            now = time.perf_counter()
            throughput = (done - n_last) * config.batch_size / max(now - t_last, 1e-9)
            t_last, n_last = now, done
            bar.set_postfix(loss=f"{loss:.4f}", ex_per_s=f"{throughput:.0f}")
            if is_main:
                writer.add_scalar("train/loss", loss, done)
                writer.add_scalar("train/learning_rate", float(schedule(done - 1)), done)
                writer.add_scalar("train/examples_per_second", throughput, done)
                writer.add_scalar("train/skipped_steps", skipped, done)
                with open(history_path, "a") as f:
                    f.write(json.dumps([done, loss]) + "\n")
            if not progress and is_main:
                print(
                    f"step {done}/{config.num_steps} loss {loss:.4f} {throughput:.0f} examples/s"
                    + (f" ({skipped} non-finite steps skipped)" if skipped else ""),
                    file=sys.stderr,
                )
        if config.eval_every and done % config.eval_every == 0 and done < config.num_steps:
            monitor = evaluate_state(config, embed, state, train, test, linear_probe=False)
            if is_main:
                writer.add_scalar("eval/knn_accuracy", monitor["knn_accuracy"], done)
                bar.write(f"step {done}: kNN monitor {100 * monitor['knn_accuracy']:.1f}%")
        # No checkpoint in the middle of a run of bad steps: with a rotating
        # max_to_keep it could push out the last good one.
        if (
            config.checkpoint_every
            and done % config.checkpoint_every == 0
            and done < end
            and not bad_run
        ):
            ckpt.save(done, state, data_state, config)
    bar.close()
    if (end > start or ckpt.latest_step() is None) and (guard or not bad_run):
        ckpt.save(end, state, iterator.get_state(), config)
    ckpt.close()

    results: dict[str, Any] = {"step": int(state.step)}
    if int(state.skipped):
        print(
            f"Warning: {int(state.skipped)} steps had a non-finite loss or gradient "
            "and were skipped.",
            file=sys.stderr,
        )
    if run_eval and int(state.step) == config.num_steps:
        results.update(
            evaluate_state(config, embed, state, train, test, linear_probe=config.eval.linear_probe)
        )
        baseline = _raw_baseline(config, train, test)
        if is_main:
            for key, value in results.items():
                if key != "step":
                    writer.add_scalar(f"eval/{key}", value, int(state.step))
            with open(os.path.join(workdir, "metrics.json"), "w") as f:
                json.dump(results, f, indent=2)
            _save_loss_png(workdir, _read_history(history_path), f"{config.method} loss")
            print(_log_table(config, results, baseline))
    if writer is not None:
        writer.close()
    return state, results
