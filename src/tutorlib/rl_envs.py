"""tutorlib.rl_envs: gymnasium plumbing for the RL chapter: vector environments, episodes, evaluation.

Used by :mod:`tutorlib.rl` and :mod:`tutorlib.rl_ddpg` (the algorithms) and by the chapter
"Reinforcement learning I" (``book/rl_actor_critic.md``). Nothing here learns: these functions
run a policy, which is any callable ``act(obs (B, obs_dim)) -> actions (B,) or (B, act_dim)``,
and record what happened.

Terminated versus truncated. gymnasium reports two ways an episode ends: ``terminated`` (a
terminal state, no future) and ``truncated`` (a time limit cut it; the state still has a future).
:func:`make_vector_env` resets an environment in the same step its episode ends, and
:func:`true_next_obs` recovers the observation it really reached (gymnasium's ``final_obs``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.spaces import Box, Discrete
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from tutorlib.validation import check_int

__all__ = [
    "CartPoleVector",
    "EpisodeTracker",
    "collect_episodes",
    "evaluate",
    "make_vector_env",
    "pendulum_angle",
    "record_episode",
    "true_next_obs",
]


def _check_act(act: object) -> None:
    if not callable(act):
        raise TypeError(f"act must be callable (observations -> actions), got {type(act).__name__}")


def _check_env_id(name: str, value: object) -> str:
    """Return ``value`` if it is the id of a registered gymnasium environment."""
    if not isinstance(value, str) or value not in gym.registry:
        raise ValueError(f"{name} must be a registered gymnasium environment id, got {value!r}")
    return value


class CartPoleVector(gym.vector.VectorEnv):
    """``num_envs`` CartPole-v1 environments stepped together in numpy: the same observations,
    rewards and flags, transition for transition, as ``gym.make_vec("CartPole-v1",
    vectorization_mode="sync")`` with same-step autoreset (``info`` holds only ``final_obs`` and
    ``_final_obs``, as a ``(num_envs, 4)`` array, where gymnasium returns an object array and
    ``final_info`` too).

    gymnasium's own numpy CartPole (``vectorization_mode="vector_entrypoint"``) draws every reset
    from one shared generator and autoresets one step *after* an episode ends (a step with reward
    0 that belongs to no episode), so its transitions differ. Here environment ``i`` owns the
    generator that ``SyncVectorEnv`` gives it (``reset(seed=s)`` seeds it with ``s + i``), its
    physics is the same float64 Euler step (Barto, Sutton and Anderson, 1983), the time limit is
    500 steps, and an environment that ends is reset in the same step, its last observation in
    ``info["final_obs"]``. ``tests/test_rl_envs.py`` compares the two transition by transition.

    The Euler step of length :math:`\\tau = 0.02` s, with force :math:`F = \\pm 10` N, cart mass
    :math:`m_c = 1`, pole mass :math:`m_p = 0.1`, half-length :math:`l = 0.5`, :math:`g = 9.8`,
    :math:`M = m_c + m_p`:

    .. math::
        q = \\frac{F + m_p l \\dot\\theta^2 \\sin\\theta}{M}, \\quad
        \\ddot\\theta = \\frac{g \\sin\\theta - q \\cos\\theta}
        {l\\,(4/3 - m_p \\cos^2\\theta / M)}, \\quad
        \\ddot x = q - \\frac{m_p l\\,\\ddot\\theta \\cos\\theta}{M},

    then :math:`x \\mathrel{+}= \\tau \\dot x`, :math:`\\dot x \\mathrel{+}= \\tau \\ddot x`,
    :math:`\\theta \\mathrel{+}= \\tau \\dot\\theta`, :math:`\\dot\\theta \\mathrel{+}= \\tau \\ddot\\theta`
    (positions from the old velocities). An episode terminates when :math:`|x| > 2.4` or
    :math:`|\\theta| > 12°`. :meth:`step` returns observations ``(num_envs, 4)`` float32, rewards
    ``(num_envs,)`` float64 (1 per step), terminated and truncated ``(num_envs,)`` bool, and
    ``info``.
    """

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.SAME_STEP}
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_threshold, x_threshold, max_episode_steps = 12 * 2 * np.pi / 360, 2.4, 500

    def __init__(self, num_envs: int) -> None:
        self.num_envs = check_int("num_envs", num_envs)
        high = np.array([4.8, np.inf, 2 * self.theta_threshold, np.inf], dtype=np.float32)
        self.single_observation_space = Box(-high, high, dtype=np.float32)
        self.single_action_space = Discrete(2)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.state = np.zeros((num_envs, 4))
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        self.generators: list[np.random.Generator | None] = [None] * num_envs
        self.needs_reset = True  # gymnasium's environments refuse to step before a reset

    def _reset_env(self, i: int) -> None:
        if self.generators[i] is None:
            self.generators[i] = seeding.np_random(None)[0]
        self.state[i] = self.generators[i].uniform(low=-0.05, high=0.05, size=(4,))
        self.elapsed[i] = 0

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        """Reset every environment; an int ``seed`` seeds environment ``i`` with ``seed + i``."""
        if options is not None:
            raise ValueError(f"options are not supported by CartPoleVector, got {options!r}")
        if seed is not None:
            if isinstance(seed, int):
                seeds = [check_int("seed", seed, minimum=0) + i for i in range(self.num_envs)]
            elif isinstance(seed, list | tuple) and len(seed) == self.num_envs:
                seeds = [check_int("seed entries", s, minimum=0) for s in seed]
            else:
                raise ValueError(f"seed must be an int >= 0 or a list of {self.num_envs} of them, "
                                 f"got {seed!r}")
            self.generators = [seeding.np_random(s)[0] for s in seeds]
        for i in range(self.num_envs):
            self._reset_env(i)
        self.needs_reset = False
        return self.state.astype(np.float32), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """One step of every environment, ``actions (num_envs,)`` in {0, 1}."""
        if self.needs_reset:
            raise ValueError("CartPoleVector.step was called before reset(): call reset() first")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not ((actions == 0) | (actions == 1)).all():
            raise ValueError(f"actions must be {self.num_envs} values in {{0, 1}}, got {actions!r}")
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(actions == 1, self.force_mag, -self.force_mag)
        costheta, sintheta = np.cos(theta), np.sin(theta)
        total_mass, polemass_length = self.masspole + self.masscart, self.masspole * self.length
        temp = (force + polemass_length * np.square(theta_dot) * sintheta) / total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * np.square(costheta) / total_mass))
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        self.state = np.stack([x + self.tau * x_dot, x_dot + self.tau * xacc,
                               theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc], axis=1)
        x, theta = self.state[:, 0], self.state[:, 2]
        terminated = (x < -self.x_threshold) | (x > self.x_threshold) | (
            theta < -self.theta_threshold) | (theta > self.theta_threshold)
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps
        obs, info = self.state.astype(np.float32), {}
        ended = terminated | truncated
        if ended.any():
            info = {"final_obs": np.where(ended[:, None], obs, 0).astype(np.float32), "_final_obs": ended}
            for i in np.flatnonzero(ended):
                self._reset_env(i)
                obs[i] = self.state[i].astype(np.float32)
        return obs, np.ones(self.num_envs), terminated, truncated, info


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` that reset in the same step an episode ends.

    ``AutoresetMode.SAME_STEP``: the observation returned at the end of an episode is already
    the first one of the next; the true last observation is in ``info["final_obs"]``.
    CartPole-v1 is the numpy-vectorised :class:`CartPoleVector` (the same transitions, several
    times faster); every other id is gymnasium's ``SyncVectorEnv``.
    """
    check_int("num_envs", num_envs)
    _check_env_id("env_id", env_id)
    if env_id == "CartPole-v1":
        return CartPoleVector(num_envs)
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})


def true_next_obs(next_obs: np.ndarray, info: dict) -> np.ndarray:
    """The observation each environment actually reached (``final_obs`` where an episode ended)."""
    if not isinstance(next_obs, np.ndarray):
        raise TypeError(f"next_obs must be a numpy array (num_envs, obs_dim), got {type(next_obs).__name__}")
    if not isinstance(info, dict):
        raise TypeError(f"info must be a dict (a vector environment's step info), got {type(info).__name__}")
    if "_final_obs" not in info:
        return next_obs
    out = next_obs.copy()
    ended = info["_final_obs"]
    out[ended] = np.stack(info["final_obs"][ended])
    return out


class EpisodeTracker:
    """Sums rewards per environment and logs ``(global step, episode return)`` when episodes end."""

    def __init__(self, num_envs: int) -> None:
        self.running = np.zeros(check_int("num_envs", num_envs))
        self.steps: list[int] = []
        self.returns: list[float] = []

    def update(self, rewards: np.ndarray, done: np.ndarray, global_step: int) -> None:
        """Add one step's ``rewards (num_envs,)``; log and reset the environments where ``done``."""
        check_int("global_step", global_step, minimum=0)
        if np.shape(rewards) != self.running.shape or np.shape(done) != self.running.shape:
            raise ValueError(f"rewards and done must have shape {self.running.shape}, "
                             f"got {np.shape(rewards)} and {np.shape(done)}")
        self.running += rewards
        for i in np.flatnonzero(done):
            self.steps.append(global_step)
            self.returns.append(float(self.running[i]))
            self.running[i] = 0.0


def collect_episodes(
    envs: gym.vector.VectorEnv, act: Callable[[torch.Tensor], torch.Tensor]
) -> list[dict[str, torch.Tensor]]:
    """Run every environment of ``envs`` for exactly one complete episode.

    Returns:
        One dict per environment with ``obs (T, obs_dim)``, ``actions (T,)``, ``rewards (T,)``,
        ``terminated (T,)`` and ``truncated (T,)``, the last step ending the episode.
    """
    if not isinstance(envs, gym.vector.VectorEnv):
        raise TypeError(f"envs must be a gymnasium vector environment (see make_vector_env), "
                        f"got {type(envs).__name__}")
    _check_act(act)
    obs, _ = envs.reset()
    n = envs.num_envs
    active = np.ones(n, dtype=bool)
    logs: list[list[tuple]] = [[] for _ in range(n)]
    while active.any():
        with torch.no_grad():
            action = act(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        next_obs, reward, term, trunc, _ = envs.step(action)
        for i in np.flatnonzero(active):
            logs[i].append((obs[i], action[i], reward[i], term[i], trunc[i]))
        active &= ~(term | trunc)
        obs = next_obs
    episodes = []
    for log in logs:
        o, a, r, te, tr = zip(*log, strict=True)
        episodes.append({
            "obs": torch.as_tensor(np.stack(o), dtype=torch.float32),
            "actions": torch.as_tensor(np.stack(a)),
            "rewards": torch.as_tensor(np.stack(r), dtype=torch.float32),
            "terminated": torch.as_tensor(np.stack(te)),
            "truncated": torch.as_tensor(np.stack(tr)),
        })
    return episodes


def evaluate(
    env_id: str, act: Callable[[torch.Tensor], torch.Tensor], episodes: int = 20, seed: int = 10_000
) -> np.ndarray:
    """Returns of ``episodes`` episodes of a fixed policy, episode ``i`` reset with seed ``seed + i``.

    Args:
        act: observations ``(B, obs_dim)`` -> actions ``(B,)`` or ``(B, act_dim)``, called
            under ``torch.no_grad()``; pass the greedy action (``agent.greedy``, or DDPG's actor
            without noise).

    Returns:
        The ``episodes`` undiscounted returns, shape ``(episodes,)``.
    """
    check_int("episodes", episodes)
    _check_env_id("env_id", env_id)
    check_int("seed", seed, minimum=0)
    _check_act(act)
    envs = make_vector_env(env_id, episodes)
    obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])
    totals = np.zeros(episodes)
    active = np.ones(episodes, dtype=bool)
    while active.any():
        with torch.no_grad():
            action = act(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        obs, reward, term, trunc, _ = envs.step(action)
        totals += reward * active
        active &= ~(term | trunc)
    envs.close()
    return totals


def record_episode(
    env_id: str, act: Callable[[torch.Tensor], torch.Tensor], seed: int, max_steps: int | None = None
) -> dict[str, np.ndarray]:
    """One episode of a policy from the reset with ``seed``.

    Returns:
        ``{"obs": (T + 1, obs_dim), "actions": (T, ...), "rewards": (T,)}``, the observations
        including the first and the last one.
    """
    _check_env_id("env_id", env_id)
    check_int("seed", seed, minimum=0)
    if max_steps is not None:
        check_int("max_steps", max_steps)
    _check_act(act)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [obs], [], []
    done = False
    while not done and (max_steps is None or len(rewards) < max_steps):
        with torch.no_grad():
            action = act(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
        obs, reward, term, trunc, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        done = term or trunc
    env.close()
    return {"obs": np.stack(observations), "actions": np.stack(actions), "rewards": np.array(rewards)}


def pendulum_angle(obs: np.ndarray | torch.Tensor) -> np.ndarray:
    """The angle :math:`\\theta` of Pendulum observations ``(..., 3)`` = (cos, sin, velocity)."""
    obs = np.asarray(obs)
    if obs.ndim == 0 or obs.shape[-1] != 3:
        raise ValueError(f"obs must have shape (..., 3) = (cos, sin, velocity), got {obs.shape}")
    return np.arctan2(obs[..., 1], obs[..., 0])
