"""tutorlib.diffusion: the shared time-conditioned network."""

import math

import pytest
import torch

from tutorlib.diffusion import TimeMLP, time_embedding


def test_time_embedding_is_cos_and_sin_of_geometric_frequencies():
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    emb = time_embedding(t, dim=6, max_frequency=100.0)
    omega = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)  # 100^(k/2), k = 0, 1, 2
    expected = torch.cat([torch.cos(t[:, None] * omega), torch.sin(t[:, None] * omega)], dim=1)
    torch.testing.assert_close(emb, expected, rtol=1e-12, atol=1e-12)
    assert emb[0, :3].tolist() == [1.0, 1.0, 1.0] and emb[0, 3:].abs().max() == 0
    assert emb[2, 0].item() == pytest.approx(math.cos(1.0))


def test_time_mlp_shapes_and_scalar_time():
    torch.manual_seed(0)
    net = TimeMLP(dim=3, hidden=16, depth=2, embed_dim=8)
    x = torch.randn(5, 3)
    out = net(x, torch.full((5,), 0.4))
    assert out.shape == (5, 3)
    torch.testing.assert_close(net(x, 0.4), out)
    torch.testing.assert_close(net(x, torch.tensor(0.4)), out)
    assert not torch.allclose(net(x, 0.9), out)  # the output depends on t


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: time_embedding(torch.zeros(2, 1), 4), "1-D tensor"),
        (lambda: time_embedding(torch.zeros(2), 5), "dim must be even"),
        (lambda: time_embedding(torch.zeros(2), 4, max_frequency=0.5), "max_frequency"),
        (lambda: TimeMLP(embed_dim=7), "embed_dim must be even"),
        (lambda: TimeMLP(dim=2)(torch.zeros(4, 3), 0.1), r"x must have shape \(B, 2\)"),
        (lambda: TimeMLP(dim=2)(torch.zeros(4, 2), torch.zeros(3)), r"t must have shape \(4,\)"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_time_mlp_rejects_a_non_int_width():
    with pytest.raises(TypeError, match="hidden"):
        TimeMLP(hidden=12.5)
