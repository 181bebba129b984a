"""tutorlib.rl_envs: gymnasium plumbing for the RL chapter: vector environments, episodes, evaluation.

Used by :mod:`tutorlib.rl` (the algorithms) and by the chapter "Reinforcement learning I"
(``book/rl_actor_critic.md``). Nothing here learns: these functions run a policy, which is any
callable ``act(obs (B, obs_dim)) -> actions (B,) or (B, act_dim)``, and record what happened.

Terminated versus truncated. gymnasium reports two ways an episode ends: ``terminated`` (a
terminal state, no future) and ``truncated`` (a time limit cut it; the state still has a future).
:func:`make_vector_env` resets an environment in the same step its episode ends, and
:func:`true_next_obs` recovers the observation it really reached (gymnasium's ``final_obs``).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from tutorlib.validation import check_int

__all__ = [
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


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` that reset in the same step an episode ends.

    ``AutoresetMode.SAME_STEP``: the observation returned at the end of an episode is already
    the first one of the next; the true last observation is in ``info["final_obs"]``.
    """
    check_int("num_envs", num_envs)
    _check_env_id("env_id", env_id)
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
