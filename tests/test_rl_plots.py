"""tutorlib.rl_plots: drawings of the cart-pole and the pendulum, and the torque map of a policy."""

import math

import matplotlib
import numpy as np
import pytest
import torch

from tutorlib import rl_ddpg, rl_plots

matplotlib.use("Agg")
import matplotlib.pyplot as plt

pytestmark = pytest.mark.usefixtures("one_thread")


def test_torque_map_and_drawings():
    torch.manual_seed(0)
    actor = rl_ddpg.DeterministicActor(3, 1, np.array([-2.0]), np.array([2.0]))
    angles, velocities, torque = rl_plots.torque_map(actor, n_angle=5, n_velocity=3)
    assert torque.shape == (3, 5) and np.all(np.abs(torque) <= 2.0)
    assert angles[0] == pytest.approx(-math.pi) and velocities[-1] == pytest.approx(8.0)

    fig, (a, b) = plt.subplots(1, 2)
    rl_plots.draw_cartpole(a, [0.5, 0.0, 0.1, 0.0])
    rl_plots.draw_pendulum(b, math.pi / 2, torque=1.0)
    rod = b.lines[0].get_xydata()
    np.testing.assert_allclose(rod[1], [-1.0, 0.0], atol=1e-12)  # theta = pi/2 is a quarter turn left
    plt.close(fig)


def test_torque_map_evaluates_the_actor_at_each_grid_state():
    torch.manual_seed(1)
    actor = rl_ddpg.DeterministicActor(3, 1, np.array([-2.0]), np.array([2.0]))
    angles, velocities, torque = rl_plots.torque_map(actor, n_angle=4, n_velocity=3, max_speed=2.0)
    i, j = 2, 1  # velocity index, angle index
    obs = torch.tensor([[math.cos(angles[j]), math.sin(angles[j]), velocities[i]]], dtype=torch.float32)
    with torch.no_grad():
        assert torque[i, j] == pytest.approx(actor(obs)[0, 0].item(), abs=1e-6)


def test_bad_arguments_raise():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="state must be"):
        rl_plots.draw_cartpole(ax, [0.0, 1.0])
    with pytest.raises(ValueError, match="theta"):
        rl_plots.draw_pendulum(ax, float("nan"))
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        rl_plots.draw_pendulum(None, 0.0)
    plt.close(fig)
    with pytest.raises(TypeError, match="actor must be callable"):
        rl_plots.torque_map(None)
    with pytest.raises(ValueError, match="n_angle must be >= 2"):
        rl_plots.torque_map(lambda o: o[:, :1], n_angle=1)
