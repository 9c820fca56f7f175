"""Linear probes fitted by L-BFGS: they reach the optimum (checked against scikit-learn), record a curve
that ends on a plateau, and a layer mix puts its weight on the informative layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.bench.probe import fit_best_l2, fit_probe


def blobs(count: int, dim: int, classes: int, seed: int, spread: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator) * spread
    targets = torch.randint(0, classes, (count,), generator=generator)
    return centres[targets] + torch.randn(count, dim, generator=generator), targets


def test_probe_matches_scikit_learn_logistic_regression(one_thread_seeded: None) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(600, 6, 4, seed=1)
    x = (x - x.mean(0)) / x.std(0, unbiased=False)  # our probe standardises; give sklearn the same inputs
    l2 = 1e-3
    probe = fit_probe([x], y, 4, l2=l2, max_iterations=500, tolerance=1e-10)
    # ours: mean cross-entropy + l2 * ||W||^2; sklearn: 0.5 ||W||^2 + C * sum cross-entropy
    reference = LogisticRegression(C=1 / (2 * l2 * len(x)), tol=1e-10, max_iter=5000).fit(x.numpy(), y.numpy())
    ours = torch.softmax(probe.logits([x]), -1).numpy()
    assert np.abs(ours - reference.predict_proba(x.numpy())).max() < 2e-3


def test_curve_decreases_to_a_plateau_and_dev_accuracy_is_recorded(one_thread_seeded: None) -> None:
    x, y = blobs(800, 8, 5, seed=2)
    dev_x, dev_y = blobs(200, 8, 5, seed=2)
    probe = fit_probe([x], y, 5, dev=[dev_x], dev_targets=dev_y, l2=1e-4, rounds_of=5, tolerance=1e-6)
    losses = probe.curve.train_loss
    assert all(later <= earlier + 1e-6 for earlier, later in zip(losses, losses[1:]))
    assert len(probe.curve.dev_accuracy) == len(losses) == len(probe.curve.iterations)
    assert probe.curve.converged_at < 500  # stopped on the tolerance, not the cap
    assert abs(losses[-1] - losses[-2]) < 1e-4 * losses[-1] + 1e-6
    assert probe.curve.dev_accuracy[-1] == pytest.approx(probe.accuracy([dev_x], dev_y))


def test_layer_mix_weights_the_informative_layer(one_thread_seeded: None) -> None:
    x, y = blobs(600, 6, 3, seed=3)
    noise = torch.randn_like(x)
    probe = fit_probe([noise, x], y, 3, l2=1e-4)
    weights = probe.layer_weights()
    assert weights is not None and weights[1] > 0.8
    assert probe.accuracy([noise, x], y) > 0.8


def test_best_l2_is_chosen_on_dev(one_thread_seeded: None) -> None:
    x, y = blobs(60, 20, 3, seed=4, spread=0.4)  # few samples, many dims: regularisation matters
    dev_x, dev_y = blobs(300, 20, 3, seed=4, spread=0.4)
    best = fit_best_l2([x], y, 3, [dev_x], dev_y, l2_grid=(1e-6, 1e-1))
    others = [fit_probe([x], y, 3, dev=[dev_x], dev_targets=dev_y, l2=l2) for l2 in (1e-6, 1e-1)]
    assert best.curve.dev_accuracy[-1] == max(p.curve.dev_accuracy[-1] for p in others)
