"""tutorlib.likelihood and tutorlib.vae: autoregressive models and the VAE's bounds.

References used: brute-force enumeration of all 2^D binary images, autograd Jacobians,
torch.distributions (Bernoulli, Normal, kl_divergence), torch.logsumexp, and a 2-D grid
quadrature checked against plain Monte Carlo from the prior.
"""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Normal, kl_divergence
from torch.nn import functional as F

from tutorlib import likelihood as lk
from tutorlib import vae as vm

pytestmark = pytest.mark.usefixtures("one_thread")


def all_binary(d: int, dtype=torch.float64) -> torch.Tensor:
    """Every binary vector of length d, shape (2**d, d)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=dtype)


def random_made(d, hidden, ordering, seed):
    torch.manual_seed(seed)
    model = lk.MADE(d, hidden, ordering).double()
    with torch.no_grad():  # larger weights than the default init, so every conditional differs
        for p in model.parameters():
            p.mul_(3.0)
    return model


# --------------------------------------------------------------------------------------------
# data and the Bernoulli likelihood
# --------------------------------------------------------------------------------------------
def test_binary_digits_split_is_fixed_binary_and_disjoint():
    x_tr, x_te, y_tr, y_te = lk.load_binary_digits()
    assert x_tr.shape == (1437, 64) and x_te.shape == (360, 64)
    assert y_tr.shape == (1437,) and y_te.shape == (360,)
    assert set(x_tr.unique().tolist()) == {0.0, 1.0}
    again = lk.load_binary_digits()
    assert torch.equal(again[1], x_te) and torch.equal(again[3], y_te)
    from sklearn.datasets import load_digits

    raw = torch.tensor(load_digits().data)
    # every test image is a thresholded image of the data set, and the class counts add up
    all_labels = torch.tensor(load_digits().target)
    assert torch.equal(torch.bincount(torch.cat([y_tr, y_te])), torch.bincount(all_labels))
    assert torch.equal((raw >= 8).float().sum(0), (x_tr.sum(0) + x_te.sum(0)).double())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"threshold": 17}, "threshold"), ({"threshold": 0}, "threshold"), ({"n_test": 0}, "n_test"),
     ({"n_test": 1797}, "n_test"), ({"seed": -1}, "seed"), ({"n_test": 2.5}, "n_test")],
)
def test_binary_digits_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        lk.load_binary_digits(**kwargs)


def test_bernoulli_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(7, 5, 64, generator=g)
    x = torch.bernoulli(torch.full((7, 5, 64), 0.4), generator=g)
    expected = Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(lk.bernoulli_log_prob(logits, x), expected)
    torch.testing.assert_close(
        lk.bernoulli_log_prob(logits, x),
        -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1),
    )
    # large logits: no log(0)
    extreme = lk.bernoulli_log_prob(torch.tensor([[200.0, -200.0]]), torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(extreme).all()


def test_bernoulli_log_prob_refuses_broadcasting():
    with pytest.raises(ValueError, match="same shape"):
        lk.bernoulli_log_prob(torch.zeros(3, 64), torch.zeros(1, 64))
    with pytest.raises(TypeError, match="logits"):
        lk.bernoulli_log_prob([0.0], torch.zeros(1))


def test_nats_to_bits_per_pixel():
    assert lk.nats_to_bits_per_pixel(64 * math.log(2)) == pytest.approx(1.0)
    with pytest.raises(TypeError, match="nats"):
        lk.nats_to_bits_per_pixel(float("nan"))
    with pytest.raises(ValueError, match="dim"):
        lk.nats_to_bits_per_pixel(1.0, dim=0)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [([[0.0, 1.0]], TypeError, "x must be a torch.Tensor"), (torch.tensor([[0, 1]]), TypeError, "floating"),
     (torch.zeros(3), ValueError, "shape"), (torch.full((2, 4), 0.5), ValueError, "binary"),
     (torch.zeros(2, 3), ValueError, r"\(N, 4\)")],
)
def test_check_binary_images(x, error, match):
    with pytest.raises(error, match=match):
        lk.check_binary_images("x", x, 4)


@pytest.mark.parametrize(
    ("ordering", "error", "match"),
    [([0, 1, 1, 3], ValueError, "permutation"), ([0, 1, 2], ValueError, "permutation"),
     ([0.0, 1.0, 2.0, 3.0], TypeError, "ordering"), (torch.tensor([0.0, 1, 2, 3]), TypeError, "ordering"),
     ("0123", TypeError, "ordering")],
)
def test_bad_orderings(ordering, error, match):
    with pytest.raises(error, match=match):
        lk.MADE(4, (8,), ordering)
    with pytest.raises(error, match=match):
        lk.FVSBN(4, ordering)


# --------------------------------------------------------------------------------------------
# the autoregressive property
# --------------------------------------------------------------------------------------------
def rank_of(ordering: torch.Tensor) -> torch.Tensor:
    rank = torch.empty_like(ordering)
    rank[ordering] = torch.arange(len(ordering))
    return rank


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 9), st.integers(0, 10_000), st.sampled_from([(16,), (12, 12), (3, 20, 7)]))
def test_made_jacobian_is_strictly_triangular_in_the_ordering(d, seed, hidden):
    """d logit_i / d x_j may be non-zero only if pixel j comes before pixel i."""
    g = torch.Generator().manual_seed(seed)
    ordering = torch.randperm(d, generator=g)
    model = random_made(d, hidden, ordering, seed)
    x = torch.randn(1, d, dtype=torch.float64, generator=g)  # any real input, not just 0/1
    jac = torch.autograd.functional.jacobian(lambda v: model(v)[0], x)[:, 0, :]  # (D_out, D_in)
    rank = rank_of(ordering)
    allowed = rank[None, :] < rank[:, None]
    assert torch.all(jac[~allowed] == 0), "an output depends on its own or a later pixel"
    # in the ordering's coordinates the Jacobian is strictly lower-triangular
    permuted = jac[ordering][:, ordering]
    assert torch.equal(permuted, torch.tril(permuted, diagonal=-1))


@pytest.mark.parametrize("d", [3, 8])
def test_made_with_enough_hidden_units_connects_every_allowed_pair(d):
    """With >= D-1 units per layer every degree occurs, so the strict lower triangle is full."""
    ordering = torch.randperm(d, generator=torch.Generator().manual_seed(d))
    model = random_made(d, (d - 1, 4 * d), ordering, 0)
    rank = rank_of(ordering)
    allowed = rank[None, :] < rank[:, None]
    assert torch.equal(model.connectivity() > 0, allowed)
    # the ReLUs switch paths off at some inputs, but over 50 inputs every allowed pair is used
    inputs = 3 * torch.randn(50, 1, d, dtype=torch.float64)
    jacs = [torch.autograd.functional.jacobian(lambda v: model(v)[0], x)[:, 0, :] for x in inputs]
    assert torch.equal(torch.stack(jacs).abs().amax(0) > 0, allowed)


def test_fvsbn_mask_and_parameter_count():
    ordering = torch.tensor([2, 0, 3, 1])
    model = lk.FVSBN(4, ordering)
    rank = rank_of(ordering)
    assert torch.equal(model.mask.bool(), rank[None, :] < rank[:, None])
    assert lk.FVSBN(64).n_parameters() == 64 * 63 // 2 + 64 == 2080
    assert torch.equal(lk.FVSBN(5).mask, torch.tril(torch.ones(5, 5), diagonal=-1))


def test_made_masks_by_hand():
    """D = 3, one hidden layer of 2 units with degrees 1, 2 (Germain et al., Fig. 1)."""
    degrees = lk.made_degrees(3, [2], torch.arange(3))
    assert degrees[1].tolist() == [1, 2]
    hidden, output = lk.made_masks(degrees)
    assert hidden.tolist() == [[1, 0, 0], [1, 1, 0]]
    assert output.tolist() == [[0, 0], [1, 0], [1, 1]]


@pytest.mark.parametrize("kind", ["made", "fvsbn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_likelihood_matches_brute_force_marginalisation(kind, seed):
    """Enumerate all 2^5 images: p sums to 1, and each conditional equals the brute-force ratio
    p(x_<i, x_i = 1) / p(x_<i) of marginals obtained by summing p over the later pixels."""
    d = 5
    ordering = torch.randperm(d, generator=torch.Generator().manual_seed(seed))
    if kind == "made":
        model = random_made(d, (16, 16), ordering, seed)
    else:
        torch.manual_seed(seed)
        model = lk.FVSBN(d, ordering).double()
        with torch.no_grad():
            model.weight.normal_(0, 2)
            model.bias.normal_(0, 1)
    xs = all_binary(d)  # (32, 5)
    with torch.no_grad():
        p = model.log_prob(xs).exp()
        logits = model(xs)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    for i in range(d):
        pixel, before = ordering[i].item(), ordering[:i]
        for row in range(len(xs)):
            same_prefix = (xs[:, before] == xs[row, before]).all(dim=1)
            marginal_prefix = p[same_prefix].sum()
            marginal_one = p[same_prefix & (xs[:, pixel] == 1)].sum()
            assert (marginal_one / marginal_prefix).item() == pytest.approx(
                torch.sigmoid(logits[row, pixel]).item(), abs=1e-10)


def test_autoregressive_sampling_matches_the_exact_probabilities():
    d = 3
    model = random_made(d, (8,), torch.tensor([1, 2, 0]), 3).float()
    samples = lk.autoregressive_sample(model, 40_000, torch.Generator().manual_seed(0))
    xs = all_binary(d, torch.float32)
    with torch.no_grad():
        p = model.log_prob(xs).exp()
    counts = (samples[:, None, :] == xs[None]).all(-1).float().mean(0)
    se = (p * (1 - p) / 40_000).sqrt()
    assert torch.all((counts - p).abs() < 5 * se + 1e-4), (counts, p)
    assert set(samples.unique().tolist()) <= {0.0, 1.0}


def test_autoregressive_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        lk.autoregressive_sample(torch.nn.Linear(2, 2), 3)
    with pytest.raises(ValueError, match="n"):
        lk.autoregressive_sample(lk.FVSBN(4), 0)
    with pytest.raises(TypeError, match="hidden_sizes"):
        lk.MADE(4, 8)
    with pytest.raises(ValueError, match="hidden_sizes"):
        lk.MADE(4, (8, 0))
    with pytest.raises(ValueError, match="dim"):
        lk.MADE(1, (8,))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        lk.MADE(4, (8,))(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="mask"):
        lk.MaskedLinear(3, 2, torch.ones(3, 2))


def test_fit_lowers_the_test_nll_and_checks_its_arguments():
    x_tr, x_te, _, _ = lk.load_binary_digits()
    torch.manual_seed(0)
    model = lk.FVSBN(64)
    with torch.no_grad():
        before = -model.log_prob(x_te).mean().item()  # all logits 0: 64 ln 2
    history = lk.fit(model, lk.autoregressive_nll, x_tr, lk.TrainConfig(epochs=5, lr=1e-2), x_eval=x_te)
    assert before == pytest.approx(64 * math.log(2))
    assert history["eval"][-1] < 0.6 * before and len(history["train"]) == 5
    assert history["eval"][-1] < history["eval"][0]
    with pytest.raises(TypeError, match="config"):
        lk.fit(model, lk.autoregressive_nll, x_tr, {"epochs": 1})
    with pytest.raises(TypeError, match="loss_fn"):
        lk.fit(model, None, x_tr, lk.TrainConfig())
    with pytest.raises(ValueError, match="x_eval"):
        lk.fit(model, lk.autoregressive_nll, x_tr, lk.TrainConfig(), x_eval=torch.zeros(3, 10))
    for field, value in [("epochs", 0), ("lr", -1.0), ("weight_decay", -0.1), ("batch_size", 1.5)]:
        with pytest.raises((TypeError, ValueError), match=field):
            lk.TrainConfig(**{field: value})


# --------------------------------------------------------------------------------------------
# VAE pieces against torch
# --------------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(st.integers(1, 50), st.floats(-1000, 1000), st.integers(0, 1000))
def test_log_mean_exp_matches_logsumexp(k, offset, seed):
    g = torch.Generator().manual_seed(seed)
    a = offset + 30 * torch.randn(k, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(vm.log_mean_exp(a, dim=0), torch.logsumexp(a, 0) - math.log(k))
    torch.testing.assert_close(vm.log_mean_exp(a.T, dim=-1), torch.logsumexp(a, 0) - math.log(k))


def test_log_mean_exp_is_stable_where_the_naive_formula_fails():
    a = torch.tensor([-1000.0, -1001.0, -1002.0])  # float32: exp underflows to 0
    naive = torch.log(torch.exp(a).mean())
    assert torch.isinf(naive)
    expected = -1000 + math.log((1 + math.exp(-1) + math.exp(-2)) / 3)
    assert vm.log_mean_exp(a).item() == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="dim"):
        vm.log_mean_exp(a, dim=1)
    with pytest.raises(ValueError, match="finite"):
        vm.log_mean_exp(torch.tensor([0.0, float("nan")]))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(0, 1000))
def test_gaussian_kl_matches_torch_distributions(latent, seed):
    g = torch.Generator().manual_seed(seed)
    mu = 3 * torch.randn(5, latent, generator=g, dtype=torch.float64)
    logvar = 2 * torch.randn(5, latent, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(vm.gaussian_kl_standard(mu, logvar), expected)
    assert torch.all(vm.gaussian_kl_standard(torch.zeros(2, latent), torch.zeros(2, latent)) == 0)


def test_log_normal_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    z, mu, logvar = (torch.randn(4, 3, 2, generator=g, dtype=torch.float64) for _ in range(3))
    expected = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(vm.log_normal(z, mu, logvar), expected)
    with pytest.raises(ValueError, match="last axes"):
        vm.log_normal(z, mu[..., :1], logvar)


def test_reparameterize_gradients_and_moments():
    mu = torch.tensor([[0.5, -1.0]], requires_grad=True)
    logvar = torch.tensor([[0.2, -0.4]], requires_grad=True)
    eps = torch.tensor([[1.5, -0.3]])
    vm.reparameterize(mu, logvar, eps).sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(1, 2))
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)
    eps_many = torch.randn(200_000, 1, 2, generator=torch.Generator().manual_seed(0))
    z = vm.reparameterize(mu.detach(), logvar.detach(), eps_many)
    torch.testing.assert_close(z.mean(0), mu.detach(), atol=0.01, rtol=0)
    torch.testing.assert_close(z.var(0), logvar.detach().exp(), atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="eps"):
        vm.reparameterize(mu, logvar, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="mu and logvar"):
        vm.gaussian_kl_standard(torch.zeros(2, 2), torch.zeros(1, 2))


# --------------------------------------------------------------------------------------------
# the bounds
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_vae():
    """A VAE with a 2-D latent, trained a little so that q is neither the prior nor exact."""
    x_tr, x_te, _, _ = lk.load_binary_digits()
    torch.manual_seed(0)
    vae = vm.VAE(64, 2, 64)
    lk.fit(vae, vm.vae_loss, x_tr, lk.TrainConfig(epochs=40, lr=3e-3))
    return vae, x_te[:40]


def _mean_and_se(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error over the first axis (independent draws)."""
    return draws.mean(0), draws.std(0) / math.sqrt(len(draws))


def test_iwae_is_above_the_elbo_and_rises_with_k(small_vae):
    vae, x = small_vae
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo, elbo_se = _mean_and_se(torch.stack([vm.elbo(vae, x, g) for _ in range(400)]))
        bounds = {k: _mean_and_se(torch.stack([vm.iwae_bound(vae, x, k, g) for _ in range(40)]))
                  for k in (1, 10, 100)}
    # per image, up to Monte Carlo noise (4.5 standard errors of the difference)
    for (lo, lo_se), (hi, hi_se) in [((elbo, elbo_se), bounds[10]), (bounds[10], bounds[100])]:
        assert torch.all(hi - lo > -4.5 * (lo_se**2 + hi_se**2).sqrt())
    assert bounds[100][0].mean() > elbo.mean() + 0.15  # measured gap: about 0.3 nats


def test_iwae_1_equals_the_elbo_in_expectation(small_vae):
    """The sampled KL of IWAE_1 and the closed-form KL of the ELBO agree on average."""
    vae, x = small_vae
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        iwae_1, iwae_se = _mean_and_se(torch.stack([vm.iwae_bound(vae, x, 1, g) for _ in range(400)]))
        elbo, elbo_se = _mean_and_se(torch.stack([vm.elbo(vae, x, g) for _ in range(400)]))
    z = (iwae_1 - elbo) / (iwae_se**2 + elbo_se**2).sqrt()
    assert torch.all(z.abs() < 4.5), z
    assert z.mean().abs() < 4.5 / math.sqrt(len(z))  # no shared bias either


def test_quadrature_matches_monte_carlo_from_the_prior_and_bounds_the_iwae(small_vae):
    vae, x = small_vae
    x = x[:10]
    quad = vm.log_marginal_quadrature(vae, x, limit=5.0, n_grid=301)
    finer = vm.log_marginal_quadrature(vae, x, limit=6.0, n_grid=501)
    torch.testing.assert_close(quad, finer, atol=1e-3, rtol=0)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # independent estimator: log mean_z p(x | z) with z from the prior
        z = torch.randn(200_000, 2, generator=g)
        log_px_z = x @ vae.decode(z).T - F.softplus(vae.decode(z)).sum(-1)  # (N, S)
        prior_mc = torch.logsumexp(log_px_z, dim=1) - math.log(len(z))
        iwae = vm.iwae_bound(vae, x, 2000, g)
    torch.testing.assert_close(quad, prior_mc, atol=0.05, rtol=0)
    assert torch.all(iwae < quad + 0.02) and torch.all(iwae > quad - 0.3)


def test_quadrature_of_a_decoder_that_ignores_z_is_the_closed_form():
    vae = vm.VAE(64, 2, 8)
    with torch.no_grad():
        vae.decoder[-1].weight.zero_()
        vae.decoder[-1].bias.copy_(torch.linspace(-2, 2, 64))
    x = lk.load_binary_digits()[1][:5]
    expected = Bernoulli(logits=torch.linspace(-2, 2, 64)).log_prob(x).sum(-1)
    torch.testing.assert_close(vm.log_marginal_quadrature(vae, x), expected, atol=1e-4, rtol=0)


def test_vae_gradients_flow_through_the_reparameterised_sample(small_vae):
    vae, x = small_vae
    vae.zero_grad()
    vm.vae_loss(vae, x, torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.encoder.parameters())
    vae.zero_grad()


def test_vae_sample_and_bad_arguments(small_vae):
    vae, x = small_vae
    means, pixels = vm.vae_sample(vae, 7, torch.Generator().manual_seed(0))
    assert means.shape == pixels.shape == (7, 64)
    assert torch.all((means > 0) & (means < 1)) and set(pixels.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(TypeError, match="vae"):
        vm.iwae_bound(lk.FVSBN(64), x, 3)
    with pytest.raises(ValueError, match="k"):
        vm.iwae_bound(vae, x, 0)
    with pytest.raises(ValueError, match="n_samples"):
        vm.elbo(vae, x, n_samples=0)
    with pytest.raises(ValueError, match="binary"):
        vm.iwae_bound(vae, x * 0.5, 3)
    with pytest.raises(ValueError, match="latent_dim"):
        vm.log_marginal_quadrature(vm.VAE(64, 3, 8), x)
    with pytest.raises(ValueError, match="limit"):
        vm.log_marginal_quadrature(vae, x, limit=-1.0)
    with pytest.raises(ValueError, match="z must have shape"):
        vae.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="latent_dim"):
        vm.VAE(64, 0)
    with pytest.raises(TypeError, match="mu"):
        vm.gaussian_kl_standard([0.0], torch.zeros(1))


def test_likelihood_argument_checks_name_the_argument():
    with pytest.raises(ValueError, match="nats"):
        lk.nats_to_bits_per_pixel(-1.0)
    with pytest.raises(TypeError, match="logits"):
        lk.bernoulli_log_prob(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="x"):
        lk.bernoulli_log_prob(torch.zeros(2, 4), torch.full((2, 4), math.nan))
    # integer 0/1 pixels give the same answer as float ones
    logits, x = torch.randn(2, 4), torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0]])
    torch.testing.assert_close(lk.bernoulli_log_prob(logits, x), lk.bernoulli_log_prob(logits, x.float()))
    for bad, error in ((-1, ValueError), (2.5, TypeError), ("a", TypeError)):
        with pytest.raises(error, match="dim"):
            lk.check_binary_images("x", torch.zeros(2, 4), bad)
        with pytest.raises(error, match="dim"):
            lk.check_ordering([0, 1], bad)
        with pytest.raises(error, match="dim"):
            lk.made_degrees(bad, [2], torch.arange(2))
        with pytest.raises(error, match="in_features"):
            lk.MaskedLinear(bad, 2, torch.ones(2, 2))
        with pytest.raises(error, match="out_features"):
            lk.MaskedLinear(2, bad, torch.ones(2, 2))
    with pytest.raises(ValueError, match="ordering"):
        lk.FVSBN(2, torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="ordering"):
        lk.MADE(2, (4,), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="ordering"):
        lk.made_degrees(2, [2], torch.tensor([-1, -1]))
    with pytest.raises(ValueError, match="ordering"):
        lk.made_degrees(2, [2], torch.tensor([0, 10**6]))
    with pytest.raises(ValueError, match="ordering"):
        lk.made_degrees(2, [2], torch.tensor(0))
    with pytest.raises(ValueError, match="hidden_sizes"):
        lk.made_degrees(2, [0], torch.arange(2))
    with pytest.raises(ValueError, match="mask"):
        lk.MaskedLinear(2, 2, torch.tensor([[1.0, math.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="mask"):
        lk.MaskedLinear(2, 2, torch.full((2, 2), 0.5))
    layer = lk.MaskedLinear(2, 3, torch.ones(3, 2, dtype=torch.long))  # an integer 0/1 mask is fine
    assert layer.mask.dtype == torch.float32
    with pytest.raises(TypeError, match="x"):
        layer(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="x"):
        layer(torch.zeros(4, 2, 1))
    with pytest.raises(ValueError, match="x"):
        layer(torch.zeros(2))


def test_vae_pieces_refuse_bad_tensors():
    z, mu, logvar = torch.zeros(5, 3, 2), torch.zeros(3, 2), torch.zeros(3, 2)
    assert vm.log_normal(z, mu, logvar).shape == (5, 3)  # a stack of samples against (N, L)
    for name, args in (("z", (z.long(), mu, logvar)), ("mu", (z, mu.long(), logvar)),
                       ("logvar", (z, mu, logvar.long()))):
        with pytest.raises(TypeError, match=name):
            vm.log_normal(*args)
    for name, args in (("z", (torch.full_like(z, math.nan), mu, logvar)),
                       ("mu", (z, torch.full_like(mu, math.nan), logvar)),
                       ("logvar", (z, mu, torch.full_like(logvar, math.inf)))):
        with pytest.raises(ValueError, match=name):
            vm.log_normal(*args)
    with pytest.raises(ValueError, match="z"):
        vm.log_normal(torch.zeros(2), mu, logvar)  # fewer axes than mu: no broadcasting
    with pytest.raises(ValueError, match="z"):
        vm.log_normal(torch.zeros(4, 2), mu, logvar)  # (4, 2) is not (3, 2)
