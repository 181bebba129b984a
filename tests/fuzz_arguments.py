"""Call every public function, class and method of tutorlib with bad arguments, one at a time.

Not collected by pytest (the name does not start with ``test_``). Run it by hand:

    .venv/bin/python tests/fuzz_arguments.py            # every topic module
    .venv/bin/python tests/fuzz_arguments.py rl gan     # some modules
    .venv/bin/python tests/fuzz_arguments.py --report   # re-tabulate the stored JSON (FUZZ_DIR)

How it works. For module ``m`` it runs ``tests/test_m.py`` once with this file loaded as a pytest
plugin (``-p fuzz_arguments``). The plugin wraps every public callable of ``tutorlib.m`` and records
the first call the tests make to each that succeeds (a deep copy of the bound arguments). When the tests
end, it replays each recorded call with ONE argument replaced by a bad value (an int made negative,
fractional or a string; a float made NaN, infinite or negative; a tensor given a NaN, an extra
trailing axis, one axis fewer or an integer dtype; an index tensor pushed out of range; a string
made unknown; each field of a config dataclass in turn) and classifies the outcome:

* ``clear``: ``ValueError``/``TypeError`` whose message names the argument (or the field);
* ``unclear``: any other exception, or one that does not name the argument;
* ``accepted``: the call returned (or was still running after a second, e.g. a trainer);
* ``crash``: the process died (the replay runs in a forked child per callable).

Some bad values are legitimately valid for some arguments (a negative coordinate, a seed of -1);
``ALLOWED`` lists the (callable, argument) pairs judged valid on reading, which are not counted.
The table printed at the end gives, per module, the share of bad calls that got a clear error.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

MODULES = [
    "autoregressive", "checks", "cnf", "contrastive", "contrastive_models", "core", "corpus", "deformable",
    "detection", "detection_models", "diffusion", "edm", "efficient", "efficient_models",
    "embeddings", "erf", "flash", "flows", "gan", "latent_diffusion", "likelihood", "metrics",
    "neuron", "ot", "receptive_field", "rectified_flow", "rf_models", "rl", "rl_ddpg", "rl_envs", "rl_lm",
    "rl_plots", "scratchpad", "sde", "sequence", "surrogates", "toy2d", "two_stage", "upsample", "vae",
]
# Topic modules whose tests live in another test file.
TEST_FILE = {"checks": "test_core", "source": "test_core", "style": "test_core",
             "contrastive_models": "test_contrastive", "efficient_models": "test_efficient",
             "deformable": "test_upsample", "corpus": "test_embeddings", "vae": "test_likelihood",
             "rl_ddpg": "test_rl"}
# (module.callable, argument, bad-value label or "*") where the "bad" value is in fact valid or,
# for per-step calls inside a training loop, deliberately not scanned (NaN), with the reason.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("rl.ActorCritic.value", "obs", "tensor one axis fewer"): "one observation (obs_dim,)",
    ("rl.ActorCritic.distribution", "obs", "tensor one axis fewer"): "one observation (obs_dim,)",
    ("rl.ActorCritic.greedy", "obs", "tensor one axis fewer"): "one observation (obs_dim,)",
    ("rl_ddpg.DeterministicActor.forward", "obs", "tensor one axis fewer"): "one observation (obs_dim,)",
    ("rl_plots.draw_pendulum", "theta", "float -1"): "any angle",
    ("rl_plots.draw_pendulum", "torque", "float -1"): "torque is signed",
    ("rl.discounted_returns", "rewards", "tensor int dtype"): "integer rewards are fine",
    ("rl.discounted_returns", "rewards", "tensor extra axis"): "(T, 1): one environment",
    ("rl.gae", "rewards", "tensor int dtype"): "integer rewards are fine",
    ("rl_ddpg.ReplayBuffer.add", "*", "tensor nan"): "called every environment step: no NaN scan",
    ("rl_ddpg.ReplayBuffer.add", "terminated", "tensor int dtype"): "0/1 integers are fine",
    ("rl_ddpg.Batch", "*", "tensor nan"): "built every DDPG step: shapes checked, no NaN scan",
    ("rl_ddpg.ddpg_losses", "batch", "*"): "every DDPG step: Batch checks shapes, no NaN scan",
    ("rl_ddpg.gaussian_exploration", "*", "tensor nan"): "every DDPG step: no NaN scan",
    ("rl_ddpg.gaussian_exploration", "actions", "tensor extra axis"): "any batch shape (..., act_dim)",
    ("rl_ddpg.gaussian_exploration", "actions", "tensor one axis fewer"): "any batch shape (..., act_dim)",
    ("rl.reinforce_loss", "baseline", "tensor one axis fewer"): "a scalar baseline is allowed",
    ("detection.precision_recall", "tp", "tensor extra axis"): "tp is (..., D)",
    ("detection.precision_recall", "tp", "tensor one axis fewer"): "tp is (..., D)",
    ("diffusion.TimeMLP.forward", "t", "*"): "t: (B,), a scalar, or integer steps",
    ("diffusion.DigitsDenoiser.forward", "t", "*"): "t: (B,), a scalar, or integer steps",
    ("diffusion.time_embedding", "t", "tensor nan"): "inside every forward pass: no NaN scan",
    ("diffusion.scale_t", "t", "int 2.5"): "a fractional step is a valid noise level",
    ("diffusion.digits_to_model", "x", "*"): "element-wise on any shape and real dtype",
    ("diffusion.model_to_digits", "x", "*"): "element-wise; NaN from a diverged sampler stays NaN",
    ("diffusion.ddim_sample", "x_T", "tensor extra axis"): "x is (B, ...), any shape the model takes",
    ("diffusion.ddim_invert", "x0", "tensor extra axis"): "x is (B, ...), any shape the model takes",
    ("diffusion.ddpm_sample", "x_T", "tensor extra axis"): "the model's own error",
    ("diffusion.ddim_sweep", "x_T", "tensor extra axis"): "the model's own error",
    ("diffusion.train_denoiser", "data", "tensor extra axis"): "the model's own error",
    ("diffusion.epsilon_loss", "x0", "tensor extra axis"): "x is (B, ...), any shape the model takes",
    ("diffusion.q_sample", "*", "tensor nan"): "every training step (epsilon_loss): no NaN scan",
    ("diffusion.predict_x0", "*", "tensor nan"): "every sampling step: no NaN scan",
    ("diffusion.predict_eps", "*", "tensor nan"): "element-wise formula: a NaN shows in the output",
    ("diffusion.ddim_step", "*", "tensor nan"): "every sampling step: no NaN scan (x_T checked once)",
    ("diffusion.ddpm_step", "*", "tensor nan"): "every sampling step: no NaN scan (x_T checked once)",
    ("diffusion.slerp", "*", "tensor nan"): "element-wise formula: a NaN shows in the output",
    ("sequence.elu_feature_map", "x", "*"): "element-wise on any shape; inside every forward pass",
    ("sequence.graph_depth", "output", "*"): "any tensor with a grad_fn",
    ("cnf.VelocityField.forward", "t", "float -1"): "any time",
    ("cnf.odeint", "t0", "float -1"): "any time",
    ("cnf.odeint", "t1", "float -1"): "any time",
    ("cnf.odeint", "y0", "*"): "any shape func takes (the last one is func's own error)",
    ("flows.volume_preserving_nll_bound", "entropy", "float -1"): "differential entropy can be < 0",
    ("flows.bits_per_dim", "log_prob", "*"): "a number or per-sample values of any shape, averaged",
    ("flows.dequantize", "k", "*"): "element-wise on any shape",
    ("cnf.divergence_hutchinson", "eps", "*"): "fuzz artefact: the replay's copies of f and z "
    "are no longer linked by autograd, so f is refused first",
    ("edm.EDMDenoiser.forward", "sigma", "*"): "a number, a scalar or (B,) tensor of any real dtype",
    ("edm.NoiseSchedule", "name", "*"): "any label",
    ("edm.sample_ode", "schedule", "*"): "the schedule's name is a free label",
    ("edm.add_noise", "s", "tensor one axis fewer"): "a scalar tensor is allowed",
    ("edm.add_noise", "sigma", "tensor one axis fewer"): "a scalar tensor is allowed",
    ("edm.add_noise", "sigma", "tensor int dtype"): "integer noise levels are fine",
    ("edm.ddpm_s_sigma", "alpha_bar", "*"): "element-wise on any shape",
    ("edm.preconditioning", "sigma", "*"): "element-wise on any shape; every forward pass: no value scan",
    ("edm.ode_drift", "x", "tensor nan"): "every solver step: no NaN scan (the noise is checked once)",
    ("edm.ode_drift", "t", "float -1"): "the time domain depends on the schedule",
    ("edm.ode_drift", "schedule", "*"): "the schedule's name is a free label",
    ("sequence.scaled_dot_product_attention", "*", "tensor nan"): "every forward pass: no NaN scan",
    ("edm.edm_loss", "x0", "tensor nan"): "every training step: fit checks the data once",
    ("flash.Traffic.read", "name", "*"): "any matrix name",
    ("flash.Traffic.write", "name", "*"): "any matrix name",
    ("flash.flash_backward", "o", "tensor nan"): "called by autograd with the forward's own outputs",
    ("flash.flash_backward", "lse", "tensor nan"): "called by autograd with the forward's own outputs",
    ("flash.flash_backward", "do", "tensor nan"): "the incoming gradient; a NaN shows in dq, dk, dv",
    ("flash.online_softmax", "x", "*"): "any shape, softmax along dim",
    ("flash.softmax_three_pass", "x", "*"): "any shape, softmax along dim",
    ("gan.Generator", "skip", "float -1"): "any real skip weight",
    ("gan.Generator.forward", "z", "tensor one axis fewer"): "one latent vector (latent_dim,)",
    ("sde.VPSDE.drift", "x", "tensor nan"): "every solver step: no NaN scan",
    ("sde.VESDE.drift", "x", "tensor nan"): "every solver step: no NaN scan",
    ("sde.score_from_denoiser", "x", "tensor nan"): "every solver step: no NaN scan",
    ("rectified_flow.rf_loss", "*", "tensor nan"): "every training step: edm.fit checks the data once",
    ("rectified_flow.distill_loss", "*", "tensor nan"): "every training step: edm.fit checks the data once",
    ("rl_lm.addition_reward", "answers", "*"): "the verifier scores any token ids (unknown ones: 0)",
    ("rl_lm.addition_reward", "target", "*"): "any integer target (a wrong one scores 0)",
    ("rl_lm.kimi_length_reward", "lengths", "index huge"): "any length",
    ("neuron.LogisticNeuron.forward", "x", "tensor one axis fewer"): "one sample (in_features,)",
    ("neuron.numerical_kinks", "lo", "*"): "any interval end",
    ("neuron.numerical_kinks", "hi", "*"): "any interval end",
    ("neuron.accuracy", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("neuron.best_accuracy_through_origin", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("neuron.fit_logistic", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("neuron.train_perceptron", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("neuron.neuron", "b", "float -1"): "any real bias",
    ("neuron.perceptron", "threshold", "float -1"): "any real threshold",
    ("receptive_field.LayerSpec", "name", "*"): "any label",
    ("receptive_field.ReceptiveField", "padding", "int -1"): "an effective padding can be negative",
    ("receptive_field.SamePad.forward", "x", "*"): "pads any (B, C, *spatial) tensor of any dtype",
    ("receptive_field.input_gradient", "x", "*"): "any shape the model takes (else the model's error)",
    ("diffusion.predict_eps", "alpha_bar_t", "tensor one axis fewer"): "a scalar tensor is allowed",
    ("diffusion.predict_x0", "alpha_bar_t", "tensor one axis fewer"): "a scalar tensor is allowed",
    ("metrics.gaussian_fit", "features", "tensor int dtype"): "integer features are converted",
    ("ot.wasserstein_1d", "p", "int 2.5"): "any real p >= 1",
    ("efficient.DynamicLossScaler.scale", "loss", "tensor nan"): "by design: the scaler finds the "
    "NaN in the gradients and skips the step",
    ("efficient.DynamicLossScaler.scale", "loss", "tensor extra axis"): "like GradScaler.scale: any tensor",
    ("efficient.FloatFormat", "name", "*"): "any label",
    ("efficient.accumulated_gradients", "y", "tensor int dtype"): "class-index (or integer) targets are fine",
    ("efficient.float_bits", "x", "*"): "a float-format inspector: NaN, inf and negatives have bits too",
    ("efficient.round_to_format", "x", "*"): "element-wise on any shape and real dtype; NaN/inf pass through",
    ("efficient.spacing", "x", "*"): "element-wise on any shape and real dtype; NaN/inf pass through",
    ("efficient.underflow_fraction", "values", "*"): "any shape (flattened); NaN counts as not flushed",
    ("likelihood.check_binary_images", "name", "*"): "any label",
    ("likelihood.MaskedLinear", "mask", "tensor int dtype"): "an integer 0/1 mask is fine",
    ("likelihood.bernoulli_log_prob", "logits", "tensor nan"): "every training step: NaN in, NaN out "
    "(x is scanned)",
    ("likelihood.bernoulli_log_prob", "x", "tensor int dtype"): "integer 0/1 pixels are fine",
    ("vae.VAE.decode", "z", "tensor one axis fewer"): "decode takes (..., L): one latent (L,)",
    ("vae.log_mean_exp", "a", "*"): "any shape, reduced along dim",
    ("vae.log_mean_exp", "dim", "int -1"): "Python's last axis",
    ("corpus.Vocab", "counts", "index huge"): "a huge count is a count, not an index",
    ("corpus.analogy_questions", "vocab", "field counts: index huge"): "a huge count is a count",
    ("corpus.encode", "vocab", "field counts: index huge"): "a huge count is a count",
    ("embeddings.cbow_examples", "tokens", "index huge"): "no vocabulary here: ids are copied "
    "through (train_word2vec checks them against V)",
    ("embeddings.skipgram_pairs", "tokens", "index huge"): "no vocabulary here: ids are copied "
    "through (train_word2vec checks them against V)",
    ("embeddings.cbow_examples", "sentence_ids", "*"): "sentence ids are labels compared for equality",
    ("embeddings.skipgram_pairs", "sentence_ids", "*"): "sentence ids are labels compared for equality",
    ("embeddings.train_word2vec", "sentence_ids", "*"): "sentence ids are labels compared for equality",
    ("embeddings.keep_probability", "counts", "index huge"): "a huge count is a count, not an index",
    ("embeddings.noise_distribution", "counts", "index huge"): "a huge count is a count, not an index",
    ("embeddings.noise_table", "counts", "index huge"): "a huge count is a count, not an index",
    ("embeddings.train_word2vec", "counts", "index huge"): "a huge count is a count, not an index",
    ("embeddings.shifted_pmi", "cooc", "tensor int dtype"): "integer counts are fine",
    ("embeddings.sppmi_svd", "cooc", "tensor int dtype"): "integer counts are fine",
    ("embeddings.subsample", "keep_prob", "tensor int dtype"): "0/1 probabilities (drop/keep) are valid",
    ("surrogates.accuracy", "pred", "tensor int dtype"): "integer 0/1 decisions are fine",
    ("surrogates.accuracy", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.f1_score", "pred", "tensor int dtype"): "integer 0/1 decisions are fine",
    ("surrogates.f1_score", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.best_threshold", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.reinforce_f1_loss", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.soft_accuracy", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.soft_confusion", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.soft_f1", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.soft_f1_loss", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.straight_through_f1_loss", "y", "tensor int dtype"): "integer 0/1 labels are fine",
    ("surrogates.gumbel_softmax", "logits", "tensor extra axis"): "logits (..., K): any batch shape",
    ("surrogates.gumbel_softmax", "logits", "tensor one axis fewer"): "logits (..., K): any batch shape",
    ("surrogates.reinforce_gradients", "baseline", "float -1"): "any real baseline (unbiased for all)",
    ("latent_diffusion.ConditionalTimeMLP.forward", "t", "tensor int dtype"): "integer steps are fine",
    ("latent_diffusion.ConditionalTimeMLP.forward", "t", "tensor one axis fewer"): "a scalar t is allowed",
    ("latent_diffusion.guided_eps", "*", "tensor nan"): "every sampling step: no NaN scan (z_T checked once)",
    ("latent_diffusion.guided_eps", "w", "float -1"): "w = -1 is the unconditional model",
    ("latent_diffusion.guided_model", "w", "float -1"): "w = -1 is the unconditional model",
    ("latent_diffusion.guided_ddim_sample", "w", "float -1"): "w = -1 is the unconditional model",
    ("latent_diffusion.weight_to_scale", "w", "float -1"): "w = -1 is the unconditional model (s = 0)",
    ("contrastive_models.label_subset", "labels", "index huge"): "class ids are compared, not indexed",
    ("contrastive_models.linear_probe", "test_labels", "index huge"): "class ids are compared with "
    "the predictions, not indexed (an unseen class counts as wrong)",
}
# Output containers (what a function returns, not what a learner configures) are not fuzzed.
SKIP_CALLS = {"rl.TrainResult", "ot.SinkhornResult", "rl_lm.RLHistory", "flash.OnlineSoftmaxTrace",
              "flash.Tile", "gan.GANRun", "gan.Snapshot", "gan.ModeCoverage", "neuron.PerceptronResult",
              "receptive_field.EmpiricalReceptiveField"}
MODULE = ""
TIMEOUT_S = 1.0
ROOT = Path(__file__).resolve().parent.parent


class _Timeout(Exception):
    pass


def _public_callables(module):
    """Yield (qualified name, owner, attribute, function) for every public callable of ``module``."""
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name, None)
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield name, module, name, obj
        elif inspect.isclass(obj):
            yield name, obj, "__init__", obj.__dict__.get("__init__")
            for attr, value in vars(obj).items():
                if inspect.isfunction(value) and not attr.startswith("_"):
                    yield f"{name}.{attr}", obj, attr, value


def _copy(value):
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


RECORDS: dict[str, tuple] = {}


def _install(module) -> None:
    for qual, owner, attr, fn in _public_callables(module):
        if fn is None:
            continue
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            continue

        def wrapper(*args, __fn=fn, __qual=qual, __sig=sig, **kwargs):
            if __qual in RECORDS:
                return __fn(*args, **kwargs)
            try:
                bound = _copy(__sig.bind(*args, **kwargs))
            except TypeError:
                bound = None
            result = __fn(*args, **kwargs)  # only a call that succeeds is recorded
            if bound is not None:
                RECORDS[__qual] = (__fn, bound)
            return result

        wrapper.__wrapped__ = fn
        wrapper.__signature__ = sig
        wrapper.__name__ = fn.__name__
        wrapper.__qualname__ = fn.__qualname__
        wrapper.__doc__ = fn.__doc__
        setattr(owner, attr, wrapper)


def _bad_values(value):
    """Bad replacements for ``value``: list of (label, bad value)."""
    import torch

    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [("int -1", -1), ("int 2.5", 2.5), ("int 'a'", "a")]
    if isinstance(value, float):
        return [("float nan", math.nan), ("float inf", math.inf), ("float -1", -1.0), ("float 'a'", "a")]
    if isinstance(value, str):
        return [("str bogus", "bogus_value")]
    if isinstance(value, torch.Tensor):
        out = []
        if value.is_floating_point():
            if value.numel() > 0:
                nan = value.detach().clone()
                nan.view(-1)[0] = math.nan
                out.append(("tensor nan", nan))
            out.append(("tensor int dtype", value.detach().round().long()))
        elif value.dtype != torch.bool and value.numel() > 0:
            out.append(("index -1", value.clone().fill_(-1)))
            out.append(("index huge", value.clone().fill_(10**6)))
        out.append(("tensor extra axis", value.unsqueeze(-1)))
        if value.ndim >= 1:
            out.append(("tensor one axis fewer", value[0] if value.shape[0] > 0 else value.sum(0)))
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = []
        for field in dataclasses.fields(value):
            if not field.init:
                continue
            for label, bad in _bad_values(getattr(value, field.name)):
                out.append((f"field {field.name}: {label}", (field.name, bad)))
        return out
    return []


def _is_module_method(fn, bound) -> bool:
    import torch

    owner = bound.arguments.get("self")
    return isinstance(owner, torch.nn.Module) and fn.__name__ != "__init__"


def _classify(exc: BaseException | None, names: list[str]) -> str:
    if exc is None:
        return "accepted"
    if isinstance(exc, _Timeout):
        return "accepted"
    if isinstance(exc, ValueError | TypeError) and any(n in str(exc) for n in names):
        return "clear"
    return "unclear"


def _alarm(signum, frame):
    raise _Timeout()


def _replay(qual, fn, bound) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    results = []
    signal.signal(signal.SIGALRM, _alarm)
    for arg, value in list(bound.arguments.items()):
        if arg == "self":
            continue
        for label, bad in _bad_values(value):
            key = f"{MODULE}.{qual}"
            if (key, arg, label) in ALLOWED or (key, "*", label) in ALLOWED or (key, arg, "*") in ALLOWED:
                continue
            if label == "tensor nan" and _is_module_method(fn, bound):
                continue  # a network's forward pass is not scanned for NaN (hot loop; NaN in, NaN out)
            names = [arg]
            # a fresh BoundArguments every time (a failed deepcopy must not let one trial's bad
            # value leak into the next), each value copied where it can be
            trial = inspect.BoundArguments(bound.signature, {k: _copy(v) for k, v in bound.arguments.items()})
            exc = None
            signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
            try:
                if label.startswith("field "):
                    field, badvalue = bad
                    names = [field]
                    trial.arguments[arg] = dataclasses.replace(trial.arguments[arg], **{field: badvalue})
                else:
                    trial.arguments[arg] = bad
                fn(*trial.args, **trial.kwargs)
            except BaseException as e:  # classifying every outcome is the point
                exc = e
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            kind = _classify(exc, names)
            message = "" if exc is None else f"{type(exc).__name__}: {str(exc)[:160]}"
            results.append({"call": qual, "arg": arg, "bad": label, "kind": kind, "message": message})
    return results


def _fuzz_module(name: str) -> dict:
    global MODULE
    MODULE = name
    results = []
    for qual, (fn, bound) in sorted(RECORDS.items()):
        if f"{name}.{qual}" in SKIP_CALLS or f"{name}.{qual.split('.')[0]}" in SKIP_CALLS:
            continue
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                payload = json.dumps(_replay(qual, fn, bound)).encode()
            except BaseException as e:
                payload = json.dumps([{"call": qual, "arg": "?", "bad": "?", "kind": "unclear",
                                       "message": f"fuzzer: {e!r}"}]).encode()
            with os.fdopen(write, "wb") as f:
                f.write(payload)
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            results.append({"call": qual, "arg": "?", "bad": "?", "kind": "crash",
                            "message": f"child exit status {status}"})
        else:
            results.extend(json.loads(data))
    return {"module": name, "recorded": sorted(RECORDS), "results": results}


# ---------------------------------------------------------------- pytest plugin (runs in the child)

def pytest_configure(config):
    name = os.environ.get("FUZZ_MODULE")
    if name:
        _install(importlib.import_module(f"tutorlib.{name}"))


def pytest_sessionfinish(session, exitstatus):
    name = os.environ.get("FUZZ_MODULE")
    if name:
        module = importlib.import_module(f"tutorlib.{name}")
        report = _fuzz_module(name)
        report["public"] = sorted(q for q, *_ in _public_callables(module))
        Path(os.environ["FUZZ_OUT"]).write_text(json.dumps(report, indent=1))


# ---------------------------------------------------------------- driver

def _kept(module: str, result: dict) -> bool:
    """Apply today's SKIP_CALLS and ALLOWED to a stored result (so old reports compare fairly)."""
    call, arg, label = f"{module}.{result['call']}", result["arg"], result["bad"]
    if call in SKIP_CALLS or call.rsplit(".", 1)[0] in SKIP_CALLS:
        return False
    return not any(key in ALLOWED for key in ((call, arg, label), (call, "*", label), (call, arg, "*")))


def main(argv: list[str]) -> None:
    report_only = bool(argv) and argv[0] == "--report"
    modules = (argv[1:] if report_only else argv) or MODULES
    outdir = Path(os.environ.get("FUZZ_DIR", "/tmp/tutorlib_fuzz"))
    outdir.mkdir(exist_ok=True)
    rows = []
    for name in modules:
        out = outdir / f"{name}.json"
        test = ROOT / "tests" / f"{TEST_FILE.get(name, 'test_' + name)}.py"
        env = dict(os.environ, FUZZ_MODULE=name, FUZZ_OUT=str(out))
        if not report_only:
            subprocess.run([sys.executable, "-m", "pytest", str(test), "-q", "-p", "no:cacheprovider",
                            "-p", "fuzz_arguments", "--no-header", "-W", "ignore"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not out.exists():
            rows.append((name, 0, 0, 0, 0, 0, 0, 0))
            continue
        report = json.loads(out.read_text())
        res = [r for r in report["results"] if _kept(name, r)]
        count = {k: sum(r["kind"] == k for r in res) for k in ("clear", "unclear", "accepted", "crash")}
        total = len(res)
        uncovered = len(set(report["public"]) - set(report["recorded"]))
        rows.append((name, total, count["clear"], count["unclear"], count["accepted"], count["crash"],
                     100.0 * count["clear"] / max(total, 1), uncovered))
    print(f"{'module':18s} {'calls':>6s} {'clear':>6s} {'unclear':>8s} {'accepted':>9s} {'crash':>6s}"
          f" {'clear %':>8s} {'not recorded':>13s}")
    for name, total, clear, unclear, accepted, crash, share, uncovered in rows:
        print(f"{name:18s} {total:6d} {clear:6d} {unclear:8d} {accepted:9d} {crash:6d} {share:7.0f}%"
              f" {uncovered:13d}")
    total = sum(r[1] for r in rows)
    clear = sum(r[2] for r in rows)
    print(f"{'all':18s} {total:6d} {clear:6d} {'':8s} {'':9s} {'':6s} {100.0 * clear / max(total, 1):7.0f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
