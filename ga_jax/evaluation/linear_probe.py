"""How much of a label an encoder's features carry: a linear probe (multinomial logistic
regression on standardised features), trained on one set and scored on another.

    accuracy = linear_probe(train_x [N, D], train_labels [N], test_x [M, D], test_labels [M])

Used on the small image encoder's pooled token against the synthetic captions' shape and
colour words (launch/probe_image_encoder.py): did the encoder learn to see what the image
flow stages must generate? Full-batch Adam, a fixed step count and an L2 penalty: the same
probe for every encoder compared, not a tuned classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["linear_probe"]


def linear_probe(
    train_x: np.ndarray,
    train_labels: Sequence,
    test_x: np.ndarray,
    test_labels: Sequence,
    *,
    steps: int = 500,
    learning_rate: float = 1e-2,
    l2: float = 1e-3,
) -> dict[str, float]:
    """{'train': accuracy, 'test': accuracy, 'classes': count} of a logistic regression fit
    on train_x (standardised by its own mean / std; test_x by the same); a test label
    unseen in training counts as wrong."""
    train_x, test_x = np.asarray(train_x, np.float32), np.asarray(test_x, np.float32)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"linear_probe: expected features [N, D] and [M, D], got {train_x.shape} and "
            f"{test_x.shape}"
        )
    if len(train_labels) != len(train_x) or len(test_labels) != len(test_x):
        raise ValueError("linear_probe: one label per feature row")
    classes = sorted(set(train_labels))
    index = {c: i for i, c in enumerate(classes)}
    y_train = jnp.asarray([index[c] for c in train_labels])
    y_test = np.asarray([index.get(c, -1) for c in test_labels])
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x_train = jnp.asarray((train_x - mean) / std)
    x_test = (test_x - mean) / std

    def loss(p):
        logits = x_train @ p[0] + p[1]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y_train).mean()
        return ce + l2 * jnp.sum(p[0] ** 2)

    opt = optax.adam(learning_rate)

    @jax.jit
    def step(p, state):
        grads = jax.grad(loss)(p)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    p = (jnp.zeros((x_train.shape[1], len(classes))), jnp.zeros(len(classes)))
    state = opt.init(p)
    for _ in range(steps):
        p, state = step(p, state)
    w, b = np.asarray(p[0]), np.asarray(p[1])
    return {
        "train": float(np.mean((np.asarray(x_train) @ w + b).argmax(1) == np.asarray(y_train))),
        "test": float(np.mean((x_test @ w + b).argmax(1) == y_test)),
        "classes": len(classes),
    }
