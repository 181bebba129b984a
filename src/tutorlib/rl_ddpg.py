"""tutorlib.rl_ddpg: DDPG (and TD3's clipped double-Q) for continuous actions.

Taught in the second half of the chapter "Reinforcement learning I: actor-critic and DDPG"
(``book/rl_actor_critic.md``, label ``chapter-rl_actor_critic``), after the on-policy
algorithms of :mod:`tutorlib.rl`, whose networks (:func:`~tutorlib.rl.mlp`,
:func:`~tutorlib.rl.layer_init`) and :class:`~tutorlib.rl.TrainResult` it reuses.

The module reads top to bottom: a :class:`ReplayBuffer` of :class:`Batch` es, target networks
moved by :func:`polyak_update`, the :class:`DeterministicActor` :math:`\\mu(s)` and the
:class:`QNetwork` :math:`Q(s, a)`, :func:`gaussian_exploration`, the two losses
(:func:`ddpg_losses`), and the loop (:class:`DDPGConfig`, :func:`train_ddpg`).

Legend (code -> paper): ``gamma`` -> :math:`\\gamma`, ``tau`` -> :math:`\\tau` (Polyak, not
attention's softmax scale), ``noise_std`` -> the exploration noise's standard deviation.

References:
    Lillicrap et al., "Continuous control with deep reinforcement learning" (DDPG), ICLR 2016;
    Fujimoto, van Hoof and Meger, "Addressing function approximation error in actor-critic
    methods" (TD3), ICML 2018.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tutorlib.rl import (
    TrainResult,
    _check_flags,
    _check_obs,
    _check_steps,
    _check_unit_interval,
    _progress,
)
from tutorlib.rl_envs import EpisodeTracker, _check_env_id, make_vector_env, true_next_obs
from tutorlib.validation import (
    check_fields,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    check_tensor,
)

__all__ = [
    "Batch",
    "DDPGConfig",
    "DeterministicActor",
    "QNetwork",
    "ReplayBuffer",
    "ddpg_losses",
    "gaussian_exploration",
    "polyak_update",
    "train_ddpg",
]


# ---------------------------------------------------------------------------------------------
# DDPG: replay buffer, target networks, exploration noise
# ---------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A minibatch of transitions: ``obs (B, obs_dim)``, ``actions (B, act_dim)``,
    ``rewards (B,)``, ``next_obs (B, obs_dim)``, ``terminated (B,)`` (float 0/1)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor

    def __post_init__(self) -> None:  # shapes and dtypes only: built every step, no NaN scan
        for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise TypeError(f"Batch.{name} must be a floating-point tensor, got "
                                f"{getattr(value, 'dtype', type(value).__name__)}")
        b, d = self.obs.shape[0], self.obs.shape[-1]
        expected = {"obs": (b, d), "actions": (b, self.actions.shape[-1]), "rewards": (b,),
                    "next_obs": (b, d), "terminated": (b,)}
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Batch.{name} must have shape {shape}, got {got}")


class ReplayBuffer:
    """A ring buffer of transitions :math:`(s, a, r, s', \\mathrm{term})`, uniformly sampled.

    When full, each new transition overwrites the oldest. Only ``terminated`` is stored: a
    truncated transition is an ordinary one whose ``next_obs`` is the true final observation,
    so the critic bootstraps through time limits.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity = check_int("capacity", capacity)
        check_int("obs_dim", obs_dim)
        check_int("act_dim", act_dim)
        self.obs = torch.zeros(capacity, obs_dim)
        self.actions = torch.zeros(capacity, act_dim)
        self.rewards = torch.zeros(capacity)
        self.next_obs = torch.zeros(capacity, obs_dim)
        self.terminated = torch.zeros(capacity)
        self.position = 0  # where the next transition goes
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
            next_obs: torch.Tensor, terminated: torch.Tensor) -> None:
        """Append ``n`` transitions: ``obs (n, obs_dim)``, ``actions (n, act_dim)``, ``rewards (n,)``,
        ``next_obs (n, obs_dim)``, ``terminated (n,)``."""
        n = obs.shape[0] if obs.dim() == 2 else -1
        expected = {"obs": (n, self.obs.shape[1]), "actions": (n, self.actions.shape[1]),
                    "rewards": (n,), "next_obs": (n, self.obs.shape[1]), "terminated": (n,)}
        given = {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": next_obs,
                 "terminated": terminated}
        for name, tensor in given.items():
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
            if tuple(tensor.shape) != expected[name]:
                raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(tensor.shape)}")
            if name != "terminated" and not tensor.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
        _check_flags(terminated=terminated)
        index = (self.position + torch.arange(n)) % self.capacity
        self.obs[index], self.actions[index], self.rewards[index] = obs, actions, rewards
        self.next_obs[index], self.terminated[index] = next_obs, terminated.float()
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement from those stored."""
        check_int("batch_size", batch_size)
        if batch_size > self.size:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {self.size} transitions in the buffer; "
                "collect more first (learning_starts >= batch_size)"
            )
        index = torch.randint(0, self.size, (batch_size,), generator=generator)
        return Batch(self.obs[index], self.actions[index], self.rewards[index],
                     self.next_obs[index], self.terminated[index])


def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    r"""Move the target network towards the online one: :math:`\theta' \gets \tau\theta + (1-\tau)\theta'`.

    (The Polyak :math:`\tau`, not attention's softmax scale.) A small :math:`\tau` makes the
    target a slow moving average, so the critic's regression target does not chase itself
    (Lillicrap et al., 2016). ``tau=1`` copies.
    """
    tau = _check_unit_interval("tau", tau)
    target_params, source_params = list(target.parameters()), list(source.parameters())
    if [p.shape for p in target_params] != [p.shape for p in source_params]:
        raise ValueError("target and source must have the same architecture")
    with torch.no_grad():  # one fused call per operation over all tensors
        torch._foreach_mul_(target_params, 1.0 - tau)
        torch._foreach_add_(target_params, source_params, alpha=tau)


class DeterministicActor(nn.Module):
    """:math:`\\mu_\\theta(s)`: observation ``(B, obs_dim)`` -> action ``(B, act_dim)`` within the bounds."""

    def __init__(
        self, obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray, hidden: int = 64
    ) -> None:
        super().__init__()
        self.obs_dim = check_int("obs_dim", obs_dim)
        check_int("act_dim", act_dim)
        check_int("hidden", hidden)
        lo, hi = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        if lo.shape != (act_dim,) or hi.shape != (act_dim,):
            raise ValueError(f"low and high must have shape ({act_dim},), got {lo.shape} and {hi.shape}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all()):
            raise ValueError(f"low and high must be finite with low < high, got {lo} and {hi}")
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, act_dim), nn.Tanh())
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("center", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.center + self.scale * self.net(_check_obs(obs, self.obs_dim))


class QNetwork(nn.Module):
    """:math:`Q_\\phi(s, a)`: ``(B, obs_dim)`` and ``(B, act_dim)`` -> ``(B,)``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = check_int("obs_dim", obs_dim), check_int("act_dim", act_dim)
        check_int("hidden", hidden)
        self.net = nn.Sequential(nn.Linear(obs_dim + act_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        _check_obs(obs, self.obs_dim)
        _check_obs(actions, self.act_dim, "actions")
        if obs.shape[:-1] != actions.shape[:-1]:
            raise ValueError(f"actions must have the batch shape of obs {tuple(obs.shape[:-1])}, "
                             f"got {tuple(actions.shape)}")
        return self.net(torch.cat([obs, actions], dim=-1)).squeeze(-1)


def gaussian_exploration(
    actions: torch.Tensor, sigma: float, scale: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The executed action: the policy's plus clipped Gaussian noise.

    .. math::

        a = \operatorname{clip}\bigl(\mu(s) + \sigma\cdot\mathrm{scale}\cdot\epsilon,\
            \mathrm{low},\ \mathrm{high}\bigr), \qquad \epsilon\sim\mathcal N(0, I).

    A deterministic policy never tries anything new by itself; DDPG adds noise to the action it
    executes (not to the one it learns). ``sigma`` is relative to the half-range ``scale``.
    """
    sigma = check_positive("sigma", sigma, allow_zero=True)
    check_tensor("actions", actions, finite=False)
    for name, value in (("scale", scale), ("low", low), ("high", high)):
        check_tensor(name, value, finite=False)
        if value.shape != actions.shape[-1:] and value.shape != actions.shape:
            raise ValueError(f"{name} must have shape {tuple(actions.shape[-1:])}, got {tuple(value.shape)}")
    noise = torch.randn(actions.shape, generator=generator) * sigma * scale
    return torch.clamp(actions + noise, low, high)


def ddpg_losses(
    actor: nn.Module, critic: nn.Module, actor_target: nn.Module, critic_target: nn.Module,
    batch: Batch, gamma: float, critic2: nn.Module | None = None,
    critic2_target: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""DDPG's two losses on one minibatch (Silver et al., 2014; Lillicrap et al., 2016).

    Critic, towards a target computed with the slow target networks :math:`\mu', Q'`:

    .. math::

        y = r + \gamma\,(1 - \mathrm{term})\, Q'\bigl(s', \mu'(s')\bigr), \qquad
        L_Q = \frac1B \sum_i \bigl(Q_\phi(s_i, a_i) - y_i\bigr)^2.

    Actor, the deterministic policy gradient: follow :math:`\nabla_a Q` through :math:`\mu`,

    .. math::

        L_\mu = -\frac1B \sum_i Q_\phi\bigl(s_i, \mu_\theta(s_i)\bigr), \qquad
        \nabla_\theta L_\mu = -\frac1B\sum_i \nabla_\theta\mu_\theta(s_i)\,
            \nabla_a Q_\phi(s_i, a)\big|_{a=\mu_\theta(s_i)}.

    With a second critic ``critic2`` and its target (TD3's *clipped double-Q*, Fujimoto et al.,
    2018) the target takes the smaller of the two target critics,
    :math:`y = r + \gamma(1 - \mathrm{term}) \min_{k=1,2} Q'_k(s', \mu'(s'))`, both critics
    regress on it (``critic_loss`` is the sum), and the actor still climbs the first critic.

    Returns:
        ``(critic_loss, actor_loss)``; step the critic's optimiser on the first and the actor's
        on the second (the actor loss also puts gradients on the critic: zero them first).
    """
    gamma = _check_unit_interval("gamma", gamma)
    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be a Batch, got {type(batch).__name__}")
    nets = [("actor", actor), ("critic", critic), ("actor_target", actor_target),
            ("critic_target", critic_target)]
    if (critic2 is None) != (critic2_target is None):
        raise ValueError("critic2 and critic2_target go together: give both (clipped double-Q) or neither")
    if critic2 is not None:
        nets += [("critic2", critic2), ("critic2_target", critic2_target)]
    for name, net in nets:
        if not isinstance(net, nn.Module):
            raise TypeError(f"{name} must be an nn.Module, got {type(net).__name__}")
    critic_loss = _ddpg_critic_loss(critic, actor_target, critic_target, batch, gamma,
                                    critic2, critic2_target)
    actor_loss = -critic(batch.obs, actor(batch.obs)).mean()
    return critic_loss, actor_loss


def _ddpg_critic_loss(
    critic: nn.Module, actor_target: nn.Module, critic_target: nn.Module, batch: Batch, gamma: float,
    critic2: nn.Module | None, critic2_target: nn.Module | None,
) -> torch.Tensor:
    """The critic half of :func:`ddpg_losses`, without the argument checks (the training loop's call)."""
    with torch.no_grad():
        next_actions = actor_target(batch.next_obs)
        next_q = critic_target(batch.next_obs, next_actions)
        if critic2_target is not None:  # TD3: the smaller of two estimates
            next_q = torch.minimum(next_q, critic2_target(batch.next_obs, next_actions))
        target = batch.rewards + gamma * (1.0 - batch.terminated) * next_q
    critic_loss = (critic(batch.obs, batch.actions) - target).pow(2).mean()
    if critic2 is not None:
        critic_loss = critic_loss + (critic2(batch.obs, batch.actions) - target).pow(2).mean()
    return critic_loss


@dataclass
class DDPGConfig:
    """DDPG in CleanRL's ``ddpg_continuous_action.py`` layout; the defaults solve Pendulum-v1."""

    env_id: str = "Pendulum-v1"
    seed: int = 1
    total_steps: int = 5_000
    learning_rate: float = 1e-3
    buffer_size: int = 100_000
    gamma: float = 0.98
    tau: float = 0.005
    """Polyak coefficient of the target networks"""
    batch_size: int = 256
    exploration_noise: float = 0.1
    """standard deviation of the Gaussian action noise, relative to the action half-range"""
    learning_starts: int = 1_000
    """uniformly random actions before this step, and no updates"""
    policy_frequency: int = 1
    """update the actor and the targets every this many critic updates"""
    hidden: int = 64
    bootstrap_truncated: bool = True
    """False stores time-limit truncations as terminal states: a common bug, kept for the exercise"""
    twin_critics: bool = False
    """True: TD3's clipped double-Q target (two critics, the smaller target); nothing else of TD3"""
    checkpoint_steps: tuple[int, ...] = ()
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, {
            "env_id": _check_env_id, "seed": (check_int, 0), "total_steps": check_int,
            "learning_rate": check_positive, "buffer_size": check_int, "gamma": check_probability,
            "tau": check_probability, "batch_size": check_int, "exploration_noise": check_nonnegative,
            "learning_starts": (check_int, 0), "policy_frequency": check_int, "hidden": check_int,
            "checkpoint_steps": _check_steps,
        })
        for name in ("bootstrap_truncated", "twin_critics", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"DDPGConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size={self.batch_size} exceeds buffer_size={self.buffer_size}")


def train_ddpg(config: DDPGConfig) -> TrainResult:
    """Train DDPG on ``config.env_id`` (continuous actions); returns the actor in a :class:`TrainResult`.

    Each step: act with :func:`gaussian_exploration` around :math:`\\mu(s)` (uniformly at random
    before ``learning_starts``), store the transition with its true next observation, sample a
    minibatch, one step on each of :func:`ddpg_losses`, then :func:`polyak_update` the targets.

    References:
        Lillicrap et al. Continuous control with deep reinforcement learning. ICLR 2016.
    """
    if not isinstance(config, DDPGConfig):
        raise TypeError(f"config must be a DDPGConfig, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    envs = make_vector_env(config.env_id, 1)
    space = envs.single_action_space
    obs_dim, act_dim = envs.single_observation_space.shape[0], space.shape[0]
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    actor = DeterministicActor(obs_dim, act_dim, space.low, space.high, config.hidden)
    critic = QNetwork(obs_dim, act_dim, config.hidden)
    actor_target, critic_target = copy.deepcopy(actor), copy.deepcopy(critic)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=config.learning_rate, foreach=True)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.learning_rate, foreach=True)
    buffer = ReplayBuffer(config.buffer_size, obs_dim, act_dim)
    twins: dict[str, nn.Module] = {}
    if config.twin_critics:  # made last, so the other networks start as in plain DDPG
        twins["critic2"] = QNetwork(obs_dim, act_dim, config.hidden)
        twins["critic2_target"] = copy.deepcopy(twins["critic2"])
        critic_opt = torch.optim.Adam([*critic.parameters(), *twins["critic2"].parameters()],
                                      lr=config.learning_rate, foreach=True)

    tracker = EpisodeTracker(1)
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    pending = sorted(config.checkpoint_steps)
    history: dict[str, list[float]] = {"critic_loss": [], "actor_loss": []}
    next_obs, _ = envs.reset(seed=config.seed)
    start = time.perf_counter()
    with _progress(config.total_steps, "DDPG", config.progress) as bar:
        for step in range(config.total_steps):
            while pending and step >= pending[0]:
                checkpoints[pending.pop(0)] = copy.deepcopy(actor.state_dict())
            obs = torch.as_tensor(next_obs, dtype=torch.float32)
            if step < config.learning_starts:
                action = low + (high - low) * torch.rand(1, act_dim, generator=rng)
            else:
                with torch.inference_mode():
                    action = gaussian_exploration(actor(obs), config.exploration_noise, actor.scale,
                                                  low, high, rng)
            next_obs, reward, term, trunc, info = envs.step(action.numpy())
            buffer.add(obs, action, torch.as_tensor(reward, dtype=torch.float32),
                       torch.as_tensor(true_next_obs(next_obs, info), dtype=torch.float32),
                       torch.as_tensor(term if config.bootstrap_truncated else term | trunc))
            tracker.update(reward, term | trunc, step + 1)
            bar.update(1)

            if step >= config.learning_starts:
                batch = buffer.sample(config.batch_size, rng)
                critic_loss = _ddpg_critic_loss(critic, actor_target, critic_target, batch, config.gamma,
                                                twins.get("critic2"), twins.get("critic2_target"))
                critic_opt.zero_grad()
                critic_loss.backward()
                critic_opt.step()
                if step % config.policy_frequency == 0:
                    actor_loss = -critic(batch.obs, actor(batch.obs)).mean()  # ddpg_losses' actor term
                    actor_opt.zero_grad()
                    actor_loss.backward()
                    actor_opt.step()
                    polyak_update(actor_target, actor, config.tau)
                    polyak_update(critic_target, critic, config.tau)
                    if twins:
                        polyak_update(twins["critic2_target"], twins["critic2"], config.tau)
                    history["actor_loss"].append(actor_loss.item())
                history["critic_loss"].append(critic_loss.item())
    while pending:
        checkpoints[pending.pop(0)] = copy.deepcopy(actor.state_dict())
    envs.close()
    return TrainResult(actor, tracker.steps, tracker.returns, checkpoints, config.total_steps,
                       time.perf_counter() - start, history, critic=critic)
