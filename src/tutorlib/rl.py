"""tutorlib.rl: policy gradients and actor-critic (A2C, PPO) on gymnasium's classic-control tasks.

Taught in the chapter "Reinforcement learning I: actor-critic and DDPG"
(``book/rl_actor_critic.md``, label ``chapter-rl_actor_critic``).

The module reads top to bottom, in the order of the chapter:

1. returns and advantages (:func:`discounted_returns`, :func:`gae`), pure functions of tensors
   laid out time-major, ``(T,)`` or ``(T, N)`` for ``T`` steps of ``N`` parallel environments;
2. REINFORCE with and without a baseline (:func:`reinforce_loss`, :func:`train_reinforce`) and
   the per-sample gradients used to measure the variance a baseline removes
   (:func:`per_sample_policy_gradients`);
3. an advantage actor-critic on gymnasium vector environments (:class:`ActorCriticConfig`,
   :func:`actor_critic_loss`, :func:`train_actor_critic`). With ``clip_coef=None``, one epoch and
   one minibatch it is A2C; with a clip it is PPO's clipped objective, which is an actor-critic too.

DDPG (replay buffer, target networks, exploration noise, TD3's clipped double-Q) lives in
:mod:`tutorlib.rl_ddpg`.

The environment plumbing (vector environments, episodes, evaluation over fixed seeds) lives in
:mod:`tutorlib.rl_envs`, the drawings of the cart-pole and the pendulum in :mod:`tutorlib.rl_plots`.

Terminated versus truncated. gymnasium reports two ways an episode ends. ``terminated``: the
task reached a terminal state (the pole fell); there is no future, so nothing is bootstrapped.
``truncated``: a time limit cut the episode (CartPole at 500 steps, Pendulum at 200); the state
still has a future worth :math:`V(s_{t+1})`, so the target bootstraps from the value of the true
next observation, but the advantage recursion must not run into the next episode. Every function
here takes both flags, and the training loops store the true next observation (gymnasium's
``final_obs``) for steps where an episode ended.

Legend (code -> paper): ``gamma`` -> :math:`\\gamma`, ``gae_lambda``/``lam`` -> :math:`\\lambda`,
``clip_coef`` -> :math:`\\varepsilon` (PPO's clip range),
``next_values`` -> :math:`V(s_{t+1})`.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from tutorlib.rl_envs import (
    EpisodeTracker,
    _check_env_id,
    collect_episodes,
    make_vector_env,
    true_next_obs,
)
from tutorlib.validation import (
    check_choice,
    check_fields,
    check_indices,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    check_real,
    check_tensor,
    optional,
)

__all__ = [
    "ActorCritic",
    "ActorCriticConfig",
    "ReinforceConfig",
    "TrainResult",
    "a2c_config",
    "actor_critic_loss",
    "discounted_returns",
    "gae",
    "gradient_variance",
    "layer_init",
    "mlp",
    "per_sample_policy_gradients",
    "reinforce_loss",
    "train_actor_critic",
    "train_reinforce",
]

# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_unit_interval(name: str, value: object) -> float:
    return check_probability(name, value)


def _check_tensor(name: str, value: object) -> torch.Tensor:
    """A finite real tensor of shape ``(T,)`` or ``(T, N)``."""
    if isinstance(value, torch.Tensor) and value.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (T,) or (T, N), got {tuple(value.shape)}")
    return check_tensor(name, value, dtype="real")


def _check_same_shape(reference: str, shape: torch.Size, **tensors: torch.Tensor | None) -> None:
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        check_tensor(name, tensor, dtype=None)
        if tensor.shape != shape:
            raise ValueError(
                f"{name} must have the shape of {reference} {tuple(shape)}, got {tuple(tensor.shape)}"
            )


def _check_flags(**tensors: torch.Tensor | None) -> None:
    """Episode flags are bool, or 0/1 numbers."""
    for name, tensor in tensors.items():
        if tensor is not None and tensor.dtype != torch.bool and bool(((tensor != 0) & (tensor != 1)).any()):
            raise ValueError(f"{name} must be bool (or 0/1), got values other than 0 and 1")


def _check_obs(obs: object, obs_dim: int, name: str = "obs") -> torch.Tensor:
    """Observations ``(B, obs_dim)`` or one observation ``(obs_dim,)``; cheap (no NaN scan)."""
    if not isinstance(obs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {obs_dim}), got {type(obs).__name__}")
    if not obs.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {obs.dtype}")
    if obs.ndim not in (1, 2) or obs.shape[-1] != obs_dim:
        raise ValueError(f"{name} must have shape (B, {obs_dim}) or ({obs_dim},), got {tuple(obs.shape)}")
    return obs


# ---------------------------------------------------------------------------------------------
# 1. Returns and advantages
# ---------------------------------------------------------------------------------------------


def discounted_returns(
    rewards: torch.Tensor,
    gamma: float,
    terminated: torch.Tensor | None = None,
    truncated: torch.Tensor | None = None,
    next_values: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Discounted return of every step, computed backwards through episode boundaries.

    .. math::

        G_t = r_t + \gamma \begin{cases}
            0 & \text{if the episode terminated at } t,\\
            V(s_{t+1}) & \text{if it was truncated at } t \text{ or } t = T-1 \text{ (bootstrap)},\\
            G_{t+1} & \text{otherwise.}
        \end{cases}

    With ``next_values=None`` the bootstrap values are 0: the Monte-Carlo return of complete
    episodes, as REINFORCE uses it.

    Args:
        rewards: :math:`r_t`, shape ``(T,)`` or ``(T, N)`` (time first).
        gamma: discount :math:`\gamma \in [0, 1]`.
        terminated: bool, same shape; true where the step ended the episode in a terminal state.
        truncated: bool, same shape; true where a time limit cut the episode after the step.
        next_values: :math:`V(s_{t+1})` of the true next observation, same shape; only read at
            truncated steps and at the last step ``T - 1``.

    Returns:
        :math:`G_t`, the shape and dtype of ``rewards``.

    Raises:
        TypeError, ValueError: a tensor of the wrong type or shape, ``gamma`` outside [0, 1].
    """
    _check_tensor("rewards", rewards)
    gamma = _check_unit_interval("gamma", gamma)
    _check_same_shape("rewards", rewards.shape, terminated=terminated, truncated=truncated,
                      next_values=next_values)
    _check_flags(terminated=terminated, truncated=truncated)
    if next_values is not None:
        check_tensor("next_values", next_values, dtype="real")
    terminated = torch.zeros_like(rewards, dtype=torch.bool) if terminated is None else terminated.bool()
    truncated = torch.zeros_like(rewards, dtype=torch.bool) if truncated is None else truncated.bool()
    next_values = torch.zeros_like(rewards) if next_values is None else next_values.to(rewards.dtype)
    returns = torch.empty_like(rewards)
    future = next_values[-1]  # bootstrap after the last step of the rollout
    for t in reversed(range(rewards.shape[0])):
        future = torch.where(truncated[t], next_values[t], future)  # cut here, bootstrap
        future = torch.where(terminated[t], torch.zeros_like(future), future)  # no future at all
        returns[t] = rewards[t] + gamma * future
        future = returns[t]
    return returns


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalised advantage estimation (Schulman et al., 2016), episode-boundary aware.

    .. math::

        \delta_t = r_t + \gamma (1 - \mathrm{term}_t)\, V(s_{t+1}) - V(s_t), \qquad
        \hat A_t = \delta_t + \gamma\lambda\,(1 - \mathrm{done}_t)\, \hat A_{t+1},

    with :math:`\mathrm{done}_t = \mathrm{term}_t \lor \mathrm{trunc}_t` and
    :math:`\hat A_T = 0`. :math:`\lambda = 0` gives the one-step TD error, :math:`\lambda = 1`
    the Monte-Carlo return minus :math:`V(s_t)` (bootstrapped at truncations and at the end of
    the rollout). The critic's regression target is :math:`\hat A_t + V(s_t)`.

    Args:
        rewards: :math:`r_t`, shape ``(T,)`` or ``(T, N)``.
        values: :math:`V(s_t)`, same shape.
        next_values: :math:`V(s_{t+1})` of the true next observation (the final observation
            where the episode ended), same shape.
        terminated, truncated: bool, same shape (see :func:`discounted_returns`).
        gamma: discount :math:`\gamma \in [0, 1]`.
        lam: :math:`\lambda \in [0, 1]`, the bias-variance knob.

    Returns:
        ``(advantages, returns)``, each the shape of ``rewards``.

    References:
        Schulman, Moritz, Levine, Jordan, Abbeel. High-dimensional continuous control using
        generalized advantage estimation. ICLR 2016.
    """
    _check_tensor("rewards", rewards)
    gamma = _check_unit_interval("gamma", gamma)
    lam = _check_unit_interval("lam", lam)
    _check_same_shape("rewards", rewards.shape, values=values, next_values=next_values,
                      terminated=terminated, truncated=truncated)
    _check_flags(terminated=terminated, truncated=truncated)
    check_tensor("values", values)
    check_tensor("next_values", next_values)
    return _gae(rewards, values, next_values, terminated, truncated, gamma, lam)


def _gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
         truncated: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gae` without the argument checks (the training loop's inner call)."""
    terminated, truncated = terminated.bool(), truncated.bool()
    not_terminal = (~terminated).to(rewards.dtype)
    not_done = (~(terminated | truncated)).to(rewards.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


# ---------------------------------------------------------------------------------------------
# Networks (CleanRL's: two tanh layers of 64, orthogonal initialisation)
# ---------------------------------------------------------------------------------------------


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights with gain ``std`` and a constant bias, as in CleanRL and SB3."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    check_nonnegative("std", std)
    check_real("bias", bias)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: Sequence[int], out_std: float, activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """``Linear -> activation -> ... -> Linear``; the last layer is initialised with gain ``out_std``."""
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size, got {sizes!r}")
    for size in sizes:
        check_int("sizes entries", size)
    check_nonnegative("out_std", out_std)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        layers.append(layer_init(nn.Linear(n_in, n_out), out_std if last else math.sqrt(2)))
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """A categorical policy :math:`\\pi_\\theta(a\\mid s)` (the actor) and :math:`V_\\phi(s)` (the critic).

    Separate networks, as in CleanRL's ``ppo.py``: ``actor`` maps an observation ``(B, obs_dim)``
    to logits ``(B, n_actions)``, ``critic`` maps it to a value ``(B, 1)``.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.obs_dim = check_int("obs_dim", obs_dim)
        check_int("n_actions", n_actions)
        check_int("hidden", hidden)
        self.actor = mlp([obs_dim, hidden, hidden, n_actions], out_std=0.01)
        self.critic = mlp([obs_dim, hidden, hidden, 1], out_std=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """:math:`V(s)`, shape ``(B,)``."""
        return self.critic(_check_obs(obs, self.obs_dim)).squeeze(-1)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Categorical:
        """:math:`\\pi(\\cdot\\mid s)` for observations ``(B, obs_dim)``."""
        return torch.distributions.Categorical(logits=self.actor(_check_obs(obs, self.obs_dim)),
                                               validate_args=False)

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Sample :math:`a \sim \pi(\cdot\mid s)`; return ``(a, log pi(a|s), V(s))``, each ``(B,)``.

        The draws of ``distribution(obs).sample()`` under the same seed, without building the
        distribution object (the rollout calls this once per step). ``obs`` is a batch
        ``(B, obs_dim)``.
        """
        obs = _check_obs(obs, self.obs_dim)
        if obs.ndim != 2:
            raise ValueError(f"obs must be a batch of shape (B, {self.obs_dim}), got {tuple(obs.shape)}")
        logits = self.actor(obs)
        log_probs = logits - logits.logsumexp(-1, keepdim=True)
        action = torch.multinomial(log_probs.softmax(-1), 1, True).squeeze(-1)
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1), self.critic(obs).squeeze(-1)

    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """The most likely action of every observation, shape ``(B,)``."""
        return self.actor(_check_obs(obs, self.obs_dim)).argmax(-1)


# ---------------------------------------------------------------------------------------------
# What a training run returns
# ---------------------------------------------------------------------------------------------








@dataclass
class TrainResult:
    """What a training run returns.

    Attributes:
        model: the trained network(s) (for DDPG, the actor).
        steps, returns: the training episodes' returns and the environment step each ended at.
        checkpoints: environment step -> a copy of the model's ``state_dict`` at that step.
        env_steps: environment steps taken, summed over parallel environments.
        seconds: wall time of the training loop.
        history: per-update diagnostics (losses), by name.
        critic: DDPG's trained critic Q(s, a) (``None`` for the other trainers,
            whose ``model`` holds its critic).
    """

    model: nn.Module
    steps: list[int]
    returns: list[float]
    checkpoints: dict[int, dict[str, torch.Tensor]]
    env_steps: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    critic: nn.Module | None = None


def _progress(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, leave=False, disable=not enabled, unit="step")


# ---------------------------------------------------------------------------------------------
# 2. REINFORCE and the variance of the policy gradient
# ---------------------------------------------------------------------------------------------


def reinforce_loss(
    log_probs: torch.Tensor, returns: torch.Tensor, baseline: torch.Tensor | None = None
) -> torch.Tensor:
    r"""The REINFORCE surrogate whose gradient is the policy-gradient estimate (Williams, 1992).

    .. math::

        L(\theta) = -\frac{1}{B}\sum_{i=1}^{B} \log\pi_\theta(a_i \mid s_i)\,\bigl(G_i - b(s_i)\bigr),
        \qquad -\nabla_\theta L = \hat g.

    Any baseline :math:`b(s)` that does not depend on the action leaves :math:`\mathbb{E}[\hat g]`
    unchanged, because :math:`\mathbb{E}_{a\sim\pi}[\nabla_\theta\log\pi_\theta(a\mid s)] = 0`; a
    good one lowers its variance. The baseline is detached: it is not trained through this loss.

    Args:
        log_probs: :math:`\log\pi_\theta(a_i\mid s_i)`, shape ``(B,)``, with gradient.
        returns: :math:`G_i`, shape ``(B,)``.
        baseline: :math:`b(s_i)`, shape ``(B,)`` or a scalar tensor, or ``None`` for no baseline.

    References:
        Williams. Simple statistical gradient-following algorithms for connectionist
        reinforcement learning. Machine Learning 8, 1992.
    """
    dims: dict[str, int] = {}
    check_tensor("log_probs", log_probs, ("B",), dims=dims)
    check_tensor("returns", returns, ("B",), dims=dims)
    if baseline is not None:
        # a (B,) baseline or one number; a (B, 1) one would broadcast into a (B, B) table
        check_tensor("baseline", baseline, () if baseline.ndim == 0 else ("B",), dims=dims)
    weights = returns if baseline is None else returns - baseline.detach()
    return -(log_probs * weights.detach()).mean()


def per_sample_policy_gradients(
    actor: nn.Module, obs: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    r"""One policy-gradient estimate per sample, :math:`g_i = \nabla_\theta\log\pi_\theta(a_i|s_i)\,w_i`.

    The rows are what a batch estimator averages; their spread is the variance the chapter
    measures. Uses ``torch.func`` (``vmap`` over ``grad``) so the batch costs one pass.

    Args:
        actor: maps ``(B, obs_dim)`` to logits ``(B, n_actions)``.
        obs: ``(B, obs_dim)``; actions: ``(B,)`` integer; weights: ``(B,)``, e.g. :math:`G_i - b(s_i)`.

    Returns:
        ``(B, P)`` with ``P`` the number of the actor's parameters.
    """
    from torch.func import functional_call, grad, vmap

    if not isinstance(actor, nn.Module):
        raise TypeError(f"actor must be an nn.Module, got {type(actor).__name__}")
    dims: dict[str, int] = {}
    check_tensor("obs", obs, ("B", None), dims=dims)
    check_tensor("actions", actions, ("B",), dims=dims, dtype="int")
    check_tensor("weights", weights, ("B",), dims=dims)
    with torch.no_grad():
        n_actions = actor(obs[:1]).shape[-1]
    check_indices("actions", actions, n_actions)
    params = {k: v.detach() for k, v in actor.named_parameters()}

    def weighted_log_prob(p, s, a, w):
        logits = functional_call(actor, p, (s[None],))[0]
        return torch.log_softmax(logits, -1).gather(0, a[None])[0] * w  # gather: vmap-friendly

    grads = vmap(grad(weighted_log_prob), in_dims=(None, 0, 0, 0))(params, obs, actions, weights)
    return torch.cat([g.reshape(obs.shape[0], -1) for g in grads.values()], dim=1)  # (B, P)


def gradient_variance(per_sample: torch.Tensor) -> float:
    r"""Total variance of per-sample gradients: :math:`\mathrm{tr\,Cov}[g] = \sum_p \mathrm{Var}[g_p]`.

    The variance of a batch-mean estimate of ``B`` independent samples is this divided by ``B``.
    """
    check_tensor("per_sample", per_sample, ("B", "P"))
    if per_sample.shape[0] < 2:
        raise ValueError(f"per_sample must have shape (B >= 2, P), got {tuple(per_sample.shape)}")
    return per_sample.var(dim=0).sum().item()


@dataclass
class ReinforceConfig:
    """REINFORCE on complete episodes from a vector environment (all fields visible)."""

    env_id: str = "CartPole-v1"
    seed: int = 1
    total_steps: int = 20_000
    """environment steps, summed over the parallel environments"""
    num_envs: int = 8
    """each update uses one complete episode from each environment"""
    learning_rate: float = 3e-3
    gamma: float = 0.99
    baseline: Literal["none", "mean", "critic"] = "critic"
    """``none``: plain REINFORCE; ``mean``: the batch's mean return; ``critic``: a learned V(s)"""
    critic_learning_rate: float = 3e-3
    critic_steps: int = 10
    """regression steps of the critic on each batch's returns (only with ``baseline='critic'``)"""
    hidden: int = 64
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, {
            "env_id": _check_env_id, "seed": (check_int, 0), "total_steps": check_int,
            "num_envs": check_int, "learning_rate": check_positive, "gamma": check_probability,
            "baseline": (check_choice, ("none", "mean", "critic")),
            "critic_learning_rate": check_positive, "critic_steps": check_int, "hidden": check_int,
        })






def train_reinforce(config: ReinforceConfig) -> TrainResult:
    """REINFORCE (Williams, 1992), optionally with a baseline, on ``config.env_id``.

    Each update: one complete episode per environment, Monte-Carlo returns
    (:func:`discounted_returns`), one Adam step on :func:`reinforce_loss`. With
    ``baseline='critic'`` a separate value network is regressed onto the returns.
    Returns a :class:`TrainResult` whose ``model`` is an :class:`ActorCritic`.
    """
    if not isinstance(config, ReinforceConfig):
        raise TypeError(f"config must be a ReinforceConfig, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    torch.manual_seed(config.seed)
    envs = make_vector_env(config.env_id, config.num_envs)
    envs.reset(seed=config.seed)
    obs_dim = envs.single_observation_space.shape[0]
    agent = ActorCritic(obs_dim, int(envs.single_action_space.n), config.hidden)
    actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=config.learning_rate)
    critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=config.critic_learning_rate)
    tracker_steps, tracker_returns = [], []
    global_step, start = 0, time.perf_counter()
    with _progress(config.total_steps, f"REINFORCE ({config.baseline})", config.progress) as bar:
        while global_step < config.total_steps:
            episodes = collect_episodes(envs, lambda o: agent.distribution(o).sample())
            batch = {k: torch.cat([e[k] for e in episodes]) for k in episodes[0]}
            returns = torch.cat([discounted_returns(e["rewards"], config.gamma, e["terminated"])
                                 for e in episodes])
            n_steps = len(batch["rewards"])
            global_step += n_steps
            bar.update(n_steps)
            for e in episodes:
                tracker_steps.append(global_step)
                tracker_returns.append(e["rewards"].sum().item())
            if config.baseline == "critic":
                for _ in range(config.critic_steps):
                    critic_loss = 0.5 * (agent.value(batch["obs"]) - returns).pow(2).mean()
                    critic_opt.zero_grad()
                    critic_loss.backward()
                    critic_opt.step()
                baseline = agent.value(batch["obs"])
            elif config.baseline == "mean":
                baseline = returns.mean()
            else:
                baseline = None
            log_probs = agent.distribution(batch["obs"]).log_prob(batch["actions"])
            loss = reinforce_loss(log_probs, returns, baseline)
            actor_opt.zero_grad()
            loss.backward()
            actor_opt.step()
    envs.close()
    return TrainResult(agent, tracker_steps, tracker_returns, {}, global_step,
                       time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# 3. Advantage actor-critic (A2C) and its clipped variant (PPO)
# ---------------------------------------------------------------------------------------------


@dataclass
class ActorCriticConfig:
    """An advantage actor-critic in CleanRL's ``ppo.py`` layout; every hyperparameter visible.

    ``clip_coef=None, update_epochs=1, num_minibatches=1`` is A2C (Mnih et al., 2016): one
    gradient step of :math:`-\\log\\pi\\,\\hat A` per rollout. A clip with several epochs is PPO
    (Schulman et al., 2017). The defaults are rl-baselines3-zoo's PPO recipe for CartPole-v1 with
    10 epochs where the zoo uses 20, and a constant clip where it decays the clip to 0.
    """

    env_id: str = "CartPole-v1"
    seed: int = 1
    total_steps: int = 100_000
    """environment steps, summed over the parallel environments"""
    num_envs: int = 8
    num_steps: int = 32
    """steps per environment in each rollout; a rollout has num_envs * num_steps transitions"""
    learning_rate: float = 1e-3
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over training"""
    gamma: float = 0.98
    gae_lambda: float = 0.8
    update_epochs: int = 10
    num_minibatches: int = 1
    clip_coef: float | None = 0.2
    """PPO's clip range ε; None: no ratio, the plain A2C policy gradient"""
    norm_adv: bool = True
    """standardise the advantages of each minibatch"""
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64
    optimizer: Literal["adam", "rmsprop"] = "adam"
    checkpoint_steps: tuple[int, ...] = ()
    """keep a copy of the weights at the first update at or after each of these steps"""
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, {
            "env_id": _check_env_id, "seed": (check_int, 0), "total_steps": check_int,
            "num_envs": check_int, "num_steps": check_int, "learning_rate": check_positive,
            "gamma": check_probability, "gae_lambda": check_probability,
            "update_epochs": check_int, "num_minibatches": check_int,
            "clip_coef": (optional, check_positive), "ent_coef": check_nonnegative,
            "vf_coef": check_nonnegative, "max_grad_norm": check_positive, "hidden": check_int,
            "optimizer": (check_choice, ("adam", "rmsprop")), "checkpoint_steps": _check_steps,
        })
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} must divide the rollout size "
                f"num_envs * num_steps = {self.num_envs * self.num_steps}"
            )


def _check_steps(name: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, tuple | list):
        raise TypeError(f"{name} must be a tuple of ints >= 0, got {type(value).__name__}")
    for step in value:
        check_int(f"{name} entries", step, minimum=0)
    return tuple(value)


def a2c_config(**overrides: object) -> ActorCriticConfig:
    """A2C: one gradient step per rollout, no ratio clipping (SB3's defaults for n_steps, lr)."""
    settings: dict[str, object] = {"clip_coef": None, "update_epochs": 1, "num_minibatches": 1,
                                   "num_steps": 5, "learning_rate": 7e-4, "gamma": 0.99,
                                   "gae_lambda": 1.0, "norm_adv": False, "optimizer": "rmsprop",
                                   "anneal_lr": False, "total_steps": 100_000}
    settings.update(overrides)
    return ActorCriticConfig(**settings)  # type: ignore[arg-type]


def actor_critic_loss(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    clip_coef: float | None,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""Actor loss + critic loss - entropy bonus, on one minibatch of shape ``(B,)``.

    Actor, A2C (``clip_coef=None``):

    .. math::

        L^{\mathrm{PG}} = -\frac1B\sum_i \log\pi_\theta(a_i\mid s_i)\,\hat A_i.

    Actor, PPO, with :math:`\rho_i = \pi_\theta(a_i\mid s_i)/\pi_{\mathrm{old}}(a_i\mid s_i)`:

    .. math::

        L^{\mathrm{CLIP}} = -\frac1B\sum_i \min\bigl(\rho_i \hat A_i,\
            \operatorname{clip}(\rho_i, 1-\varepsilon, 1+\varepsilon)\,\hat A_i\bigr).

    At :math:`\theta = \theta_{\mathrm{old}}` both have the same gradient,
    since :math:`\nabla\rho = \rho\,\nabla\log\pi`; the clip only acts after the first step.
    Critic: :math:`\frac12 (V_\phi(s_i) - \hat R_i)^2`. Total:
    :math:`L = L^{\mathrm{actor}} + c_v L^{V} - c_e \mathcal{H}[\pi]`.

    Returns:
        ``(loss, stats)``; ``stats`` holds the three terms and the clipped fraction as floats.
    """
    dims: dict[str, int] = {}
    for name, value in (("new_log_probs", new_log_probs), ("old_log_probs", old_log_probs),
                        ("advantages", advantages), ("new_values", new_values), ("returns", returns),
                        ("entropy", entropy)):
        check_tensor(name, value, ("B",), dims=dims)
    if clip_coef is not None:
        check_positive("clip_coef", clip_coef)
    check_nonnegative("vf_coef", vf_coef)
    check_nonnegative("ent_coef", ent_coef)
    return _actor_critic_loss(new_log_probs, old_log_probs, advantages, new_values, returns, entropy,
                              clip_coef, vf_coef, ent_coef)


def _actor_critic_loss(
    new_log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
    new_values: torch.Tensor, returns: torch.Tensor, entropy: torch.Tensor, clip_coef: float | None,
    vf_coef: float, ent_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`actor_critic_loss` without the argument checks (the training loop's inner call)."""
    if clip_coef is None:
        pg_loss = -(new_log_probs * advantages).mean()
        clip_fraction = 0.0
    else:
        ratio = (new_log_probs - old_log_probs).exp()
        unclipped = ratio * advantages
        clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
        pg_loss = -torch.min(unclipped, clipped).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip_coef).float().mean().item()
    v_loss = 0.5 * (new_values - returns).pow(2).mean()
    entropy_mean = entropy.mean()
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy_mean
    stats = {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(),
             "entropy": entropy_mean.item(), "clip_fraction": clip_fraction}
    return loss, stats


def _check_actor_critic_config(config: ActorCriticConfig) -> None:
    if not isinstance(config, ActorCriticConfig):
        raise TypeError(f"config must be an ActorCriticConfig, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction


def train_actor_critic(config: ActorCriticConfig) -> TrainResult:
    """Train an :class:`ActorCritic` on ``config.env_id`` (discrete actions), CleanRL style.

    Each iteration: (1) roll out ``num_steps`` in each of ``num_envs`` environments, storing the
    true next observation where an episode ended; (2) compute GAE advantages and returns with
    :func:`gae`, bootstrapping at truncations; (3) ``update_epochs`` passes of
    :func:`actor_critic_loss` over ``num_minibatches`` shuffled minibatches.

    References:
        Mnih et al. Asynchronous methods for deep reinforcement learning. ICML 2016.
        Schulman et al. Proximal policy optimization algorithms. arXiv:1707.06347, 2017.
        Huang et al. CleanRL. JMLR 2022.
    """
    _check_actor_critic_config(config)
    torch.manual_seed(config.seed)
    envs = make_vector_env(config.env_id, config.num_envs)
    obs_dim = envs.single_observation_space.shape[0]
    agent = ActorCritic(obs_dim, int(envs.single_action_space.n), config.hidden)
    if config.optimizer == "adam":  # foreach: one fused update for all tensors (same numbers)
        optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5, foreach=True)
    else:  # SB3's A2C: RMSprop(alpha=0.99, eps=1e-5)
        optimizer = torch.optim.RMSprop(agent.parameters(), lr=config.learning_rate, alpha=0.99, eps=1e-5,
                                        foreach=True)
    T, N = config.num_steps, config.num_envs
    batch_size = T * N
    minibatch_size = batch_size // config.num_minibatches
    num_iterations = math.ceil(config.total_steps / batch_size)
    shuffle = torch.Generator().manual_seed(config.seed)

    # rollout storage: what the environments return stays in numpy until the rollout is complete
    obs_buf, next_obs_buf = np.zeros((T, N, obs_dim), np.float32), np.zeros((T, N, obs_dim), np.float32)
    rewards_buf = np.zeros((T, N), np.float32)
    term_buf, trunc_buf = np.zeros((T, N), bool), np.zeros((T, N), bool)
    actions_buf = torch.zeros(T, N, dtype=torch.long)
    logp_buf, values_buf = torch.zeros(T, N), torch.zeros(T, N)

    tracker = EpisodeTracker(N)
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    pending = sorted(config.checkpoint_steps)
    history: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": [],
                                       "clip_fraction": []}
    next_obs, _ = envs.reset(seed=config.seed)
    global_step, start = 0, time.perf_counter()
    with _progress(num_iterations * batch_size, "actor-critic", config.progress) as bar:
        for iteration in range(num_iterations):
            while pending and global_step >= pending[0]:
                checkpoints[pending.pop(0)] = copy.deepcopy(agent.state_dict())
            if config.anneal_lr:
                optimizer.param_groups[0]["lr"] = config.learning_rate * (1 - iteration / num_iterations)

            # (1) rollout
            for t in range(T):
                obs_buf[t] = next_obs
                obs = torch.from_numpy(obs_buf[t])
                with torch.inference_mode():  # no autograd bookkeeping while acting
                    actions_buf[t], logp_buf[t], values_buf[t] = agent.act(obs)
                next_obs, rewards_buf[t], term_buf[t], trunc_buf[t], info = envs.step(actions_buf[t].numpy())
                next_obs_buf[t] = true_next_obs(next_obs, info)
                global_step += N
                tracker.update(rewards_buf[t], term_buf[t] | trunc_buf[t], global_step)
            bar.update(batch_size)

            # (2) advantages: bootstrap from V(true next state) unless the episode terminated
            with torch.inference_mode():
                next_values = agent.value(torch.from_numpy(next_obs_buf).reshape(-1, obs_dim)).reshape(T, N)
                advantages, returns = _gae(torch.from_numpy(rewards_buf), values_buf, next_values,
                                           torch.from_numpy(term_buf), torch.from_numpy(trunc_buf),
                                           config.gamma, config.gae_lambda)

            # (3) optimise the actor and the critic
            b_obs, b_actions = torch.from_numpy(obs_buf).reshape(-1, obs_dim), actions_buf.reshape(-1)
            b_logp, b_adv, b_ret = logp_buf.reshape(-1), advantages.reshape(-1), returns.reshape(-1)
            for _ in range(config.update_epochs):
                order = torch.randperm(batch_size, generator=shuffle)
                for first in range(0, batch_size, minibatch_size):
                    mb = order[first:first + minibatch_size]
                    dist = agent.distribution(b_obs[mb])
                    mb_adv = b_adv[mb]
                    if config.norm_adv:
                        mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                    loss, stats = _actor_critic_loss(
                        dist.log_prob(b_actions[mb]), b_logp[mb], mb_adv, agent.value(b_obs[mb]),
                        b_ret[mb], dist.entropy(), config.clip_coef, config.vf_coef, config.ent_coef)
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm, foreach=True)
                    optimizer.step()
            for key, value in stats.items():
                history[key].append(value)
    while pending:  # checkpoints at or beyond the end of training
        checkpoints[pending.pop(0)] = copy.deepcopy(agent.state_dict())
    envs.close()
    return TrainResult(agent, tracker.steps, tracker.returns, checkpoints, global_step,
                       time.perf_counter() - start, history)
