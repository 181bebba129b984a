"""tutorlib.rl_plots: the cart-pole, the pendulum and a deterministic policy's torque, drawn with matplotlib.

Used by the chapter "Reinforcement learning I" (``book/rl_actor_critic.md``). The drawings are
made from the environment's state, with gymnasium's geometry, so no game window (pygame) is
needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from torch import nn

from tutorlib.validation import check_int, check_positive, check_real

__all__ = ["draw_cartpole", "draw_pendulum", "torque_map"]


def _check_ax(ax: object) -> None:
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")


def draw_cartpole(ax: Axes, state: Sequence[float], color: str = "#0072B2") -> None:
    """Draw CartPole-v1 from its state ``(x, x_dot, theta, theta_dot)`` (theta = 0 is upright).

    The geometry is gymnasium's: track half-width 2.4, pole of length 1.0 (twice the
    environment's half-length 0.5), failure beyond 12 degrees.
    """
    _check_ax(ax)
    if len(state) != 4:
        raise ValueError(f"state must be (x, x_dot, theta, theta_dot), got {len(state)} numbers")
    x, theta = check_real("state[0]", float(state[0])), check_real("state[2]", float(state[2]))
    ax.plot([-2.4, 2.4], [0, 0], color="black", lw=1)
    ax.add_patch(plt.Rectangle((x - 0.25, -0.08), 0.5, 0.16, color="#444444", zorder=2))
    tip = (x + math.sin(theta), math.cos(theta))
    ax.plot([x, tip[0]], [0, tip[1]], color=color, lw=4, solid_capstyle="round", zorder=3)
    for limit in (-12, 12):
        rad = math.radians(limit)
        ax.plot([x, x + math.sin(rad)], [0, math.cos(rad)], color="#7F7F7F", lw=0.6, ls=":")
    ax.set(xlim=(-2.6, 2.6), ylim=(-0.3, 1.2), aspect="equal", yticks=[], xlabel="cart position x (m)")


def draw_pendulum(ax: Axes, theta: float, torque: float | None = None, color: str = "#0072B2") -> None:
    """Draw Pendulum-v1 at angle ``theta`` (0 is upright, radians) and, if given, its torque.

    The torque (in N·m, at most 2) is an arc around the pivot whose length is proportional to it.
    """
    _check_ax(ax)
    theta = check_real("theta", theta)
    if torque is not None:
        torque = check_real("torque", torque)
    tip = (-math.sin(theta), math.cos(theta))  # as gymnasium draws it: theta counter-clockwise
    ax.plot([0, tip[0]], [0, tip[1]], color=color, lw=5, solid_capstyle="round")
    ax.plot([0], [0], "o", color="black", ms=5)
    if torque is not None and abs(torque) > 1e-3:
        span = math.pi / 2 * float(torque) / 2.0  # positive torque turns counter-clockwise
        arc = np.linspace(math.pi / 2, math.pi / 2 + span, 20)
        ax.plot(0.3 * np.cos(arc), 0.3 * np.sin(arc), color="#D55E00", lw=2)
        ax.plot([0.3 * np.cos(arc[-1])], [0.3 * np.sin(arc[-1])], "o", color="#D55E00", ms=4)
    ax.set(xlim=(-1.25, 1.25), ylim=(-1.25, 1.25), aspect="equal")
    ax.set_axis_off()


def torque_map(
    actor: nn.Module, n_angle: int = 101, n_velocity: int = 81, max_speed: float = 8.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The deterministic policy's torque on a grid of Pendulum states.

    Returns:
        ``(angles (n_angle,), velocities (n_velocity,), torque (n_velocity, n_angle))``; angles
        in [-pi, pi] (0 upright), velocities in [-max_speed, max_speed] rad/s.
    """
    if not callable(actor):
        raise TypeError(f"actor must be callable (observations (B, 3) -> torques (B, 1)), "
                        f"got {type(actor).__name__}")
    check_int("n_angle", n_angle, minimum=2)
    check_int("n_velocity", n_velocity, minimum=2)
    max_speed = check_positive("max_speed", max_speed)
    angles = np.linspace(-math.pi, math.pi, n_angle)
    velocities = np.linspace(-max_speed, max_speed, n_velocity)
    a, v = np.meshgrid(angles, velocities)  # (n_velocity, n_angle)
    obs = torch.as_tensor(np.stack([np.cos(a), np.sin(a), v], axis=-1), dtype=torch.float32)
    with torch.no_grad():
        torque = actor(obs.reshape(-1, 3)).reshape(n_velocity, n_angle).numpy()
    return angles, velocities, torque
