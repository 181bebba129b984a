"""tutorlib.surrogates: checked against scikit-learn, torch.nn.functional, scipy and closed forms."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from tutorlib import surrogates as sg


# ---------------------------------------------------------------------------------------------
# hard metrics
# ---------------------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 1), min_size=n, max_size=n))))
def test_hard_metrics_match_scikit_learn(pair):
    pred, y = (torch.tensor(v, dtype=torch.float32) for v in pair)
    assert sg.f1_score(pred, y) == pytest.approx(f1_score(pair[1], pair[0], zero_division=0), abs=1e-12)
    assert sg.accuracy(pred, y) == pytest.approx(accuracy_score(pair[1], pair[0]), abs=1e-12)


def test_predict_uses_greater_or_equal_and_has_no_gradient():
    p = torch.tensor([0.2, 0.5, 0.7], requires_grad=True)
    pred = sg.predict(p, 0.5)
    assert pred.tolist() == [0.0, 1.0, 1.0]
    assert not pred.requires_grad  # the step is what makes the metrics piecewise constant


def test_best_threshold_is_the_brute_force_optimum():
    g = torch.Generator().manual_seed(0)
    for n in (1, 7, 60):
        y = (torch.rand(n, generator=g) < 0.3).float()
        p = (torch.rand(n, generator=g) * 10).round() / 10  # many ties
        t, best = sg.best_threshold(p, y)
        brute = max(f1_score(y.numpy(), (p >= s).numpy(), zero_division=0) for s in p.unique().tolist())
        assert best == pytest.approx(brute, abs=1e-12)
        assert f1_score(y.numpy(), (p >= t).numpy(), zero_division=0) == pytest.approx(best, abs=1e-12)


def test_optimal_f1_threshold_is_half_the_optimal_f1_for_calibrated_scores():
    """Lipton, Elkan and Naryanaswamy (2014): t* = F1*/2 when P(y=1 | p) = p."""
    g = torch.Generator().manual_seed(1)
    p = torch.rand(200_000, generator=g, dtype=torch.float64) ** 3  # few positives
    y = torch.bernoulli(p, generator=g)
    t, best = sg.best_threshold(p, y)
    assert abs(t - best / 2) < 0.01, (t, best)


# ---------------------------------------------------------------------------------------------
# soft metrics
# ---------------------------------------------------------------------------------------------
def test_soft_counts_equal_hard_counts_and_soft_f1_tends_to_sklearn_f1():
    g = torch.Generator().manual_seed(2)
    y = (torch.rand(200, generator=g) < 0.2).double()
    scores = torch.randn(200, generator=g, dtype=torch.float64)
    scores = scores.sign() * (0.05 + scores.abs())  # keep scores off the threshold
    hard = f1_score(y.numpy(), (scores >= 0).numpy())
    gaps = []
    for temperature in (1.0, 0.1, 0.01, 1e-4):
        gaps.append(abs(sg.soft_f1(torch.sigmoid(scores / temperature), y).item() - hard))
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-6, gaps
    tp, fp, fn = sg.soft_confusion((scores >= 0).double(), y)
    pred = (scores >= 0).double()
    assert (tp.item(), fp.item(), fn.item()) == (
        (pred * y).sum().item(), (pred * (1 - y)).sum().item(), ((1 - pred) * y).sum().item())


def test_soft_counts_are_the_expected_counts_of_bernoulli_decisions():
    p = torch.tensor([0.9, 0.2, 0.6], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    expected = torch.zeros(3, dtype=torch.float64)
    for bits in itertools.product([0, 1], repeat=3):  # enumerate all labellings
        d = torch.tensor(bits, dtype=torch.float64)
        prob = torch.prod(torch.where(d == 1, p, 1 - p))
        expected += prob * torch.stack([(d * y).sum(), (d * (1 - y)).sum(), ((1 - d) * y).sum()])
    assert torch.allclose(torch.stack(sg.soft_confusion(p, y)), expected, atol=1e-12)


def test_soft_f1_loss_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 0.0] * 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: sg.soft_f1_loss(s, y), (logits,))


def test_soft_accuracy_binary_and_multiclass():
    p = torch.tensor([0.9, 0.2, 0.6])
    y = torch.tensor([1.0, 0.0, 0.0])
    assert sg.soft_accuracy(p, y).item() == pytest.approx((0.9 + 0.8 + 0.4) / 3)
    g = torch.Generator().manual_seed(4)
    probs = torch.softmax(torch.randn(50, 4, generator=g), 1)
    classes = torch.randint(0, 4, (50,), generator=g)
    reference = (probs * nn.functional.one_hot(classes, 4)).sum(1).mean()
    assert torch.allclose(sg.soft_accuracy(probs, classes), reference)
    one_hot = nn.functional.one_hot(probs.argmax(1), 4).float()  # hard probabilities: hard accuracy
    assert sg.soft_accuracy(one_hot, classes).item() == pytest.approx(
        accuracy_score(classes.numpy(), probs.argmax(1).numpy()))


# ---------------------------------------------------------------------------------------------
# Gumbel and straight-through
# ---------------------------------------------------------------------------------------------
def test_gumbel_max_samples_the_categorical_distribution():
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    g = torch.Generator().manual_seed(5)
    z = sg.gumbel_max(logits, 200_000, generator=g)
    counts = torch.bincount(z, minlength=5).double()
    probs = torch.softmax(logits.double(), 0)
    assert chisquare(counts.numpy(), (probs * 200_000).numpy()).pvalue > 1e-3
    assert (counts / 200_000 - probs).abs().max() < 0.004


def test_gumbel_noise_has_the_gumbel_mean_and_variance():
    g = torch.Generator().manual_seed(6)
    noise = sg.sample_gumbel((400_000,), g, torch.float64)
    assert noise.mean().item() == pytest.approx(np.euler_gamma, abs=0.01)
    assert noise.var().item() == pytest.approx(math.pi**2 / 6, abs=0.02)


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_matches_torch_with_the_same_noise(hard):
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(7), requires_grad=True)
    torch.manual_seed(0)
    ours = sg.gumbel_softmax(logits, 0.7, hard=hard)
    torch.manual_seed(0)
    theirs = nn.functional.gumbel_softmax(logits, tau=0.7, hard=hard)
    assert torch.allclose(ours, theirs, atol=1e-6)
    weights = torch.randn(8, 5)
    (ga,) = torch.autograd.grad((ours * weights).sum(), logits)
    (gb,) = torch.autograd.grad((theirs * weights).sum(), logits)
    assert torch.allclose(ga, gb, atol=1e-5)


def test_gumbel_softmax_tends_to_the_gumbel_max_one_hot_as_tau_goes_to_zero():
    logits = torch.tensor([0.3, -0.2, 1.0, 0.0], dtype=torch.float64)
    noise = sg.sample_gumbel((1000, 4), torch.Generator().manual_seed(8), torch.float64)
    argmax = (logits + noise).argmax(1)
    y = sg.gumbel_softmax(logits.expand(1000, 4), 1e-3, gumbels=noise)
    assert torch.allclose(y.sum(1), torch.ones(1000, dtype=torch.float64))
    assert torch.equal(y.argmax(1), argmax)
    assert (y.max(1).values > 0.99).float().mean() > 0.99


def test_straight_through_has_the_hard_value_and_the_soft_gradient():
    p = torch.tensor([0.2, 0.55, 0.9], requires_grad=True)
    out = sg.straight_through_threshold(p, 0.5)
    assert out.tolist() == [0.0, 1.0, 1.0]
    weights = torch.tensor([1.0, -2.0, 3.0])
    (grad,) = torch.autograd.grad((out * weights).sum(), p)
    assert torch.equal(grad, weights)  # d yhat / d p = 1


def test_straight_through_f1_value_is_hard_f1_gradient_is_soft_f1_gradient():
    g = torch.Generator().manual_seed(9)
    p = torch.rand(30, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(30, generator=g) < 0.4).double()
    yhat = sg.straight_through_threshold(p)
    tp, fp, fn = (yhat * y).sum(), (yhat * (1 - y)).sum(), ((1 - yhat) * y).sum()
    f1_st = 2 * tp / (2 * tp + fp + fn)
    assert f1_st.item() == pytest.approx(f1_score(y.numpy(), (p >= 0.5).detach().numpy()), abs=1e-12)
    (grad_st,) = torch.autograd.grad(f1_st, p)
    q = (p.detach() >= 0.5).double().requires_grad_(True)  # the soft F1 at the hard decisions
    (grad_soft,) = torch.autograd.grad(sg.soft_f1(q, y), q)
    assert torch.allclose(grad_st, grad_soft)


def test_straight_through_f1_loss_value_and_gradient():
    g = torch.Generator().manual_seed(19)
    logits = torch.randn(40, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(40, generator=g) < 0.3).double()
    loss = sg.straight_through_f1_loss(logits, y, 0.4)
    p = torch.sigmoid(logits.detach())
    assert loss.item() == pytest.approx(1 - f1_score(y.numpy(), (p >= 0.4).numpy()), abs=1e-12)
    (grad,) = torch.autograd.grad(loss, logits)
    d = (p >= 0.4).double()  # closed form: dF1/dd_i at the decisions, chained through sigma'
    tp, predicted, positives = (d * y).sum(), d.sum(), y.sum()
    df1 = 2 * (y * (predicted + positives) - tp) / (predicted + positives) ** 2
    assert torch.allclose(grad, -df1 * p * (1 - p), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# gradient estimators on the categorical toy
# ---------------------------------------------------------------------------------------------
theta0 = torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64)
f0 = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)


def test_exact_gradient_matches_autograd_and_finite_differences():
    theta = theta0.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(sg.expectation(theta, f0), theta)
    assert torch.allclose(sg.exact_gradient(theta0, f0), auto, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: sg.expectation(t, f0), (theta,))


@pytest.mark.parametrize("baseline", [0.0, 2.0])
def test_reinforce_is_unbiased(baseline):
    samples = sg.reinforce_gradients(theta0, f0, 200_000, baseline, torch.Generator().manual_seed(10))
    stats = sg.estimator_stats(samples, sg.exact_gradient(theta0, f0))
    assert stats.bias < 4 * stats.bias_stderr, stats


def test_reinforce_per_sample_formula():
    """Each row is (f(z) - b) times the gradient of log pi_z, for the z that was drawn."""
    pi = torch.softmax(theta0, 0)
    samples = sg.reinforce_gradients(theta0, f0, 50, 0.5, torch.Generator().manual_seed(11))
    z = torch.multinomial(pi, 50, replacement=True, generator=torch.Generator().manual_seed(11))
    for row, k in zip(samples, z.tolist(), strict=True):
        theta = theta0.clone().requires_grad_(True)
        (score,) = torch.autograd.grad(torch.log_softmax(theta, 0)[k], theta)
        assert torch.allclose(row, (f0[k] - 0.5) * score)


def test_gumbel_softmax_gradients_per_sample_closed_form_and_bias():
    tau = 0.5
    samples = sg.gumbel_softmax_gradients(theta0, f0, tau, 64, torch.Generator().manual_seed(12))
    noise = sg.sample_gumbel((64, 3), torch.Generator().manual_seed(12), torch.float64)
    y = torch.softmax((theta0 + noise) / tau, 1)
    closed = y * (f0 - (y @ f0)[:, None]) / tau  # d/dtheta of f . softmax((theta + g) / tau)
    assert torch.allclose(samples, closed, atol=1e-12)
    exact = sg.exact_gradient(theta0, f0)
    hot = sg.estimator_stats(sg.gumbel_softmax_gradients(theta0, f0, 5.0, 100_000,
                                                         torch.Generator().manual_seed(13)), exact)
    cold = sg.estimator_stats(sg.gumbel_softmax_gradients(theta0, f0, 0.5, 100_000,
                                                          torch.Generator().manual_seed(14)), exact)
    assert hot.bias > 20 * hot.bias_stderr  # biased, and visibly so
    assert cold.bias < hot.bias and cold.std > hot.std  # the temperature trades bias for variance


def test_estimator_stats_against_numpy():
    rng = np.random.default_rng(15)
    x = rng.normal(size=(500, 3))
    exact = np.array([0.1, -0.2, 0.3])
    stats = sg.estimator_stats(torch.tensor(x), torch.tensor(exact))
    assert stats.bias == pytest.approx(np.linalg.norm(x.mean(0) - exact))
    assert stats.std**2 == pytest.approx(x.var(0, ddof=1).sum())
    assert stats.rmse**2 == pytest.approx(stats.bias**2 + stats.std**2)


# ---------------------------------------------------------------------------------------------
# REINFORCE on F1
# ---------------------------------------------------------------------------------------------
def test_leave_one_out_baseline():
    r = torch.tensor([1.0, 2.0, 4.0, 7.0])
    expected = torch.tensor([(r.sum() - v) / 3 for v in r])
    assert torch.allclose(sg.leave_one_out_baseline(r), expected)


def test_reinforce_f1_rewards_are_sklearn_f1_and_gradient_is_the_score_function():
    g = torch.Generator().manual_seed(16)
    logits = torch.randn(25, generator=g, requires_grad=True)
    y = (torch.rand(25, generator=g) < 0.3).float()
    loss, rewards = sg.reinforce_f1_loss(logits, y, 6, torch.Generator().manual_seed(17))
    samples = torch.bernoulli(torch.sigmoid(logits.detach()).expand(6, -1),
                              generator=torch.Generator().manual_seed(17))
    for row, reward in zip(samples, rewards, strict=True):
        assert reward.item() == pytest.approx(f1_score(y.numpy(), row.numpy(), zero_division=0), abs=1e-6)
    (grad,) = torch.autograd.grad(loss, logits)
    advantages = rewards - sg.leave_one_out_baseline(rewards)
    expected = -(advantages[:, None] * (samples - torch.sigmoid(logits.detach()))).mean(0)
    assert torch.allclose(grad, expected, atol=1e-6)


def test_reinforce_f1_is_unbiased_for_the_expected_f1(one_thread):
    """Exact gradient of E[F1] by enumerating all 2^4 labellings; REINFORCE's mean agrees."""
    logits = torch.tensor([0.5, -1.0, 0.2, 1.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    p = torch.sigmoid(logits)
    expected_f1 = 0.0
    for bits in itertools.product([0, 1], repeat=4):
        d = torch.tensor(bits, dtype=torch.float64)
        expected_f1 = expected_f1 + torch.prod(torch.where(d == 1, p, 1 - p)) * sg.f1_score(d, y)
    (exact,) = torch.autograd.grad(expected_f1, logits)
    g = torch.Generator().manual_seed(18)
    grads = []
    for _ in range(800):
        loss, _ = sg.reinforce_f1_loss(logits, y, 8, g)
        grads.append(-torch.autograd.grad(loss, logits)[0])
    stats = sg.estimator_stats(torch.stack(grads), exact)
    assert stats.bias < 4 * stats.bias_stderr, (stats, exact)
    assert stats.bias_stderr < 0.1 * exact.norm().item()  # precise enough to see a real bias


# ---------------------------------------------------------------------------------------------
# the experiment's plumbing
# ---------------------------------------------------------------------------------------------
def test_make_imbalanced_splits_and_standardises():
    data = sg.make_imbalanced(n=2000, positive_fraction=0.05, seed=0)
    assert data.x_train.shape == (1000, 20)
    assert data.x_val.shape == (500, 20) and data.x_test.shape == (500, 20)
    assert 0.03 < data.y_train.mean().item() < 0.07
    assert torch.allclose(data.x_train.mean(0), torch.zeros(20), atol=1e-5)


@pytest.mark.parametrize("loss", ["ce", "soft_f1", "st_f1", "reinforce_f1"])
def test_train_classifier_improves_its_objective(loss, one_thread):
    data = sg.make_imbalanced(n=2000, seed=1)
    steps = 100 if loss == "reinforce_f1" else 60  # REINFORCE is the slow learner
    result = sg.train_classifier(data, sg.TrainConfig(loss=loss, steps=steps, seed=0))
    assert len(result.curve) == len(result.val_f1) == steps
    torch.manual_seed(0)  # val_f1 starts with the untrained model's F1 on the validation split
    with torch.no_grad():
        scores = nn.Linear(20, 1)(data.x_val).squeeze(-1)
    reference = f1_score(data.y_val.numpy(), (scores >= 0).numpy(), zero_division=0)
    assert result.val_f1[0] == pytest.approx(reference)
    first, last = np.mean(result.curve[:5]), np.mean(result.curve[-5:])
    # the curve is the loss, or the mean F1 reward for REINFORCE (about 0.08 -> 0.17 here)
    assert (last > first + 0.05) if loss == "reinforce_f1" else (last < first - 0.1), (first, last)


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def test_bad_arguments_raise_with_their_names():
    p, y = torch.tensor([0.2, 0.8]), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="probs"):
        sg.predict(torch.tensor([0.2, 1.5]))
    with pytest.raises(TypeError, match="probs"):
        sg.predict([0.2, 0.5])
    with pytest.raises(ValueError, match="probs"):
        sg.soft_f1(torch.tensor([0.2, float("nan")]), y)
    with pytest.raises(ValueError, match="threshold"):
        sg.predict(p, 1.5)
    with pytest.raises(TypeError, match="threshold"):
        sg.predict(p, True)
    with pytest.raises(ValueError, match="y"):
        sg.soft_f1(p, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="y"):
        sg.f1_score(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="pred"):
        sg.accuracy(torch.tensor([0.5, 1.0]), y)
    with pytest.raises(ValueError, match="eps"):
        sg.soft_f1(p, y, eps=0.0)
    with pytest.raises(ValueError, match="y"):
        sg.soft_accuracy(torch.full((2, 3), 1 / 3), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="y"):
        sg.soft_accuracy(torch.full((2, 3), 1 / 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="tau"):
        sg.gumbel_softmax(torch.zeros(3), 0.0)
    with pytest.raises(TypeError, match="hard"):
        sg.gumbel_softmax(torch.zeros(3), 1.0, hard=1)
    with pytest.raises(ValueError, match="gumbels"):
        sg.gumbel_softmax(torch.zeros(3), 1.0, gumbels=torch.zeros(4))
    with pytest.raises(TypeError, match="generator"):
        sg.gumbel_max(torch.zeros(3), 5, generator=0)
    with pytest.raises(ValueError, match="num_samples"):
        sg.gumbel_max(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="logits"):
        sg.gumbel_max(torch.zeros(2, 3), 5)
    with pytest.raises(TypeError, match="shape"):
        sg.sample_gumbel([3])
    with pytest.raises(ValueError, match="hard and soft"):
        sg.straight_through(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="f must have shape"):
        sg.expectation(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="theta"):
        sg.exact_gradient(torch.zeros(3, dtype=torch.long), torch.zeros(3))
    with pytest.raises(TypeError, match="baseline"):
        sg.reinforce_gradients(torch.zeros(3), torch.zeros(3), 10, baseline=float("inf"))
    with pytest.raises(ValueError, match="tau"):
        sg.gumbel_softmax_gradients(torch.zeros(3), torch.zeros(3), -1.0, 10)
    with pytest.raises(ValueError, match="samples"):
        sg.estimator_stats(torch.zeros(1, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="rewards"):
        sg.leave_one_out_baseline(torch.zeros(1))
    with pytest.raises(ValueError, match="num_samples"):
        sg.reinforce_f1_loss(torch.zeros(2), y, 1)
    with pytest.raises(ValueError, match="positive_fraction"):
        sg.make_imbalanced(positive_fraction=0.7)
    with pytest.raises(ValueError, match="n"):
        sg.make_imbalanced(n=10)
    data = sg.make_imbalanced(n=200)
    with pytest.raises(ValueError, match="loss"):
        sg.TrainConfig(loss="accuracy")
    with pytest.raises(ValueError, match="lr"):
        sg.TrainConfig(lr=-1.0)
    with pytest.raises(TypeError, match="steps"):
        sg.TrainConfig(steps=2.5)
    with pytest.raises(ValueError, match="num_samples"):
        sg.TrainConfig(num_samples=1)
    config = sg.TrainConfig()
    config.seed = -1  # changed after construction: train_classifier checks again
    with pytest.raises(ValueError, match="seed"):
        sg.train_classifier(data, config)
    with pytest.raises(ValueError, match="x_val"):
        sg.ImbalancedData(data.x_train, data.y_train, data.x_val[:, :5], data.y_val, data.x_test, data.y_test)
    with pytest.raises(ValueError, match="y_test"):
        sg.ImbalancedData(data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test[:-1])
    with pytest.raises(ValueError, match="x_train"):
        sg.ImbalancedData(data.x_train * math.nan, data.y_train, data.x_val, data.y_val, data.x_test,
                          data.y_test)
    with pytest.raises(ValueError, match="bias"):
        sg.EstimatorStats(bias=-1.0, bias_stderr=0.0, std=0.0, rmse=0.0)
    with pytest.raises(TypeError, match="data"):
        sg.train_classifier(None, sg.TrainConfig())
