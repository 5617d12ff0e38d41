"""Bad input raises ValueError at trace time, naming the argument."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import jaxmetric as jm

EMB = jnp.ones((6, 4))
LABELS = jnp.array([0, 0, 1, 1, 2, 2])
LABEL_LOSSES = {
    "triplet_margin_loss": jm.triplet_margin_loss,
    "contrastive_loss": jm.contrastive_loss,
    "angular_loss": jm.angular_loss,
    "ntxent_loss": jm.ntxent_loss,
}


@pytest.mark.parametrize("name", sorted(LABEL_LOSSES))
def test_label_losses_check_shapes(name):
    loss = LABEL_LOSSES[name]
    with pytest.raises(ValueError, match="`embeddings` must be 2-D"):
        loss(jnp.ones((6,)), LABELS)
    with pytest.raises(ValueError, match="`embeddings` must be 2-D"):
        loss(jnp.ones((6, 4, 1)), LABELS)
    with pytest.raises(ValueError, match="`labels` has length 5"):
        loss(EMB, LABELS[:5])
    with pytest.raises(ValueError, match="`labels` must be 1-D"):
        loss(EMB, LABELS[:, None])
    with pytest.raises(ValueError, match="`labels` must be integers"):
        loss(EMB, LABELS.astype(jnp.float32))
    with pytest.raises(ValueError, match="`embeddings` must be a floating"):
        loss(EMB.astype(jnp.int32), LABELS)
    with pytest.raises(ValueError, match=r"`mask` must have shape \(6,\)"):
        loss(EMB, LABELS, mask=jnp.ones(5, bool))
    # The same errors surface under jit, at trace time.
    with pytest.raises(ValueError, match="`labels` has length 5"):
        jax.jit(loss)(EMB, LABELS[:5])


@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        jm.ntxent_loss(EMB, LABELS, temperature=temperature)
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        jm.simclr_loss(EMB, EMB, temperature=temperature)
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        jm.npair_loss(EMB, EMB, temperature=temperature)
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        jm.moco_loss(EMB, EMB, EMB, temperature=temperature)


def test_unknown_names():
    with pytest.raises(ValueError, match="Unknown `metric` 'manhattan'"):
        jm.pairwise_distances(EMB, metric="manhattan")
    with pytest.raises(ValueError, match="Unknown `metric` 'euclidean'"):
        jm.pairwise_similarities(EMB, metric="euclidean")
    with pytest.raises(ValueError, match="Unknown `metric`"):
        jm.triplet_margin_loss(EMB, LABELS, metric="l1")
    with pytest.raises(ValueError, match="Unknown `mining` 'semihard'"):
        jm.triplet_margin_loss(EMB, LABELS, mining="semihard")
    with pytest.raises(ValueError, match="Unknown `reduction`"):
        jm.triplet_margin_loss(EMB, LABELS, reduction="avg")
    with pytest.raises(ValueError, match="Unknown `metric`"):
        jm.contrastive_loss(EMB, LABELS, metric="dot")
    with pytest.raises(ValueError, match="Unknown `reduction`"):
        jm.contrastive_loss(EMB, LABELS, reduction="max")


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="`margin` must be >= 0"):
        jm.triplet_margin_loss(EMB, LABELS, margin=-0.1)
    with pytest.raises(ValueError, match="`neg_margin` must be >= 0"):
        jm.contrastive_loss(EMB, LABELS, neg_margin=-1.0)
    with pytest.raises(ValueError, match="`pos_margin` must be >= 0"):
        jm.contrastive_loss(EMB, LABELS, pos_margin=-1.0)
    for alpha in (0.0, 90.0, -5.0):
        with pytest.raises(ValueError, match="`alpha` must be in"):
            jm.angular_loss(EMB, LABELS, alpha=alpha)
    with pytest.raises(ValueError, match="`l2_reg` must be >= 0"):
        jm.npair_loss(EMB, EMB, l2_reg=-1.0)


def test_pair_losses_check_shapes():
    with pytest.raises(ValueError, match="`z1` and `z2` must have the same shape"):
        jm.simclr_loss(EMB, EMB[:5])
    with pytest.raises(ValueError, match="`z1` must be 2-D"):
        jm.simclr_loss(EMB[0], EMB[0])
    with pytest.raises(ValueError, match="`anchors` and `positives`"):
        jm.npair_loss(EMB, EMB[:, :3])
    with pytest.raises(ValueError, match="`labels` has length 5"):
        jm.npair_loss(EMB, EMB, labels=LABELS[:5])
    with pytest.raises(ValueError, match="`queries` and `keys`"):
        jm.moco_loss(EMB, EMB[:4], EMB)
    with pytest.raises(ValueError, match="`queue` rows"):
        jm.moco_loss(EMB, EMB, jnp.ones((8, 3)))
    with pytest.raises(ValueError, match=r"`queue_mask` must have shape \(8,\)"):
        jm.moco_loss(EMB, EMB, jnp.ones((8, 4)), queue_mask=jnp.ones(7, bool))


def test_distances_check_dimensions():
    with pytest.raises(ValueError, match="`y` must have the feature dimension"):
        jm.pairwise_distances(EMB, jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="`x` must be 2-D"):
        jm.pairwise_similarities(jnp.ones(3))


def test_axis_name_outside_a_mapped_context():
    with pytest.raises(ValueError, match="`axis_name`='data' is not bound"):
        jm.ntxent_loss(EMB, LABELS, axis_name="data")
    with pytest.raises(ValueError, match="`axis_name`='data' is not bound"):
        jm.triplet_margin_loss(EMB, LABELS, axis_name="data")
    with pytest.raises(ValueError, match="`axis_name`='data' is not bound"):
        jm.moco_loss(EMB, EMB, EMB, axis_name="data")
    with pytest.raises(ValueError, match="`axis_name`='data' is not bound"):
        jm.simclr_loss(EMB, EMB, axis_name="data")
    with pytest.raises(ValueError, match="`axis_name`='data' is not bound"):
        jm.npair_loss(EMB, EMB, axis_name="data")
    with pytest.raises(ValueError, match="`axis_name`='batch' is not bound"):
        jm.enqueue(jm.init_queue(6, 4), EMB, axis_name="batch")


def test_queue_arguments():
    with pytest.raises(ValueError, match="`size` must be > 0"):
        jm.init_queue(0, 4)
    with pytest.raises(ValueError, match="`keys` have dimension 4"):
        jm.enqueue(jm.init_queue(6, 3), EMB)
