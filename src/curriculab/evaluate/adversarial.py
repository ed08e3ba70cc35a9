"""Adversarial robustness in the evaluate stage: FGSM, BIM, MIM (MI-FGSM) and PGD from torchattacks.

torchattacks works on [0, 1] pixels; the harness normalises in its loader. `Classifier` puts the run's
normalisation in front of the network as its first layer, so the attacks perturb raw pixels and the
L∞ budget ε is in pixel units. The final model is attacked in eval mode, a batch at a time on the
run's device. A test image counts as robust only if it is classified correctly both clean and attacked.

A randomised `predict` hook (a test-time defence such as TTSA) is attacked two ways (Athalye, Carlini &
Wagner 2018): *transfer*, the adversarial images of the plain network classified through the defence,
and *adaptive*, the attack run through the defence with Expectation over Transformation: each gradient
is the mean over `eot_samples` independent draws of the defence. The adaptive number is the one to trust.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curriculab.config import ConfigError
from curriculab.evaluate.settings.adversarial import (
    ATTACKS,
    AdversarialParams,
    AttackParams,
    check_block,
    out_dir,
    resolve_attack,
    selected,
)

# --------------------------------------------------------------------------- the attacked model


class Classifier(nn.Module):
    """[0, 1] pixels → the run's normalisation (first layer) → `predict(model, x)`, or the network alone.

    With `draws` > 1 the output stacks that many independent draws of a randomised predict, (draws·n, C);
    the attack is then called with the labels repeated, so its mean loss is the mean over draws and its
    gradient is the EOT gradient, the mean of the per-draw gradients.
    """

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor,
                 predict: Callable | None = None, draws: int = 1):
        super().__init__()
        self.model, self.predict, self.draws = model, predict, draws
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1) if mean.numel() > 1 else mean.reshape(1))
        self.register_buffer("std", std.reshape(1, -1, 1, 1) if std.numel() > 1 else std.reshape(1))
        self.eval()

    def train(self, mode: bool = True) -> Classifier:
        """Always eval mode: torchattacks restores a module's mode after attacking, and BN must not see
        adversarial batch statistics."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        if self.predict is None:
            return self.model(z)
        return torch.cat([self.predict(self.model, z) for _ in range(self.draws)])


def make_attack(name: str, clf: Classifier, p: AttackParams):
    try:
        import torchattacks
    except ImportError:
        raise ConfigError("adversarial evaluation needs torchattacks: `make venv`, or `pip install --no-deps "
                          "torchattacks==3.5.1`") from None

    cls = getattr(torchattacks, ATTACKS[name])
    if name == "fgsm":
        atk = cls(clf, eps=p.eps)
    elif name == "bim":
        atk = cls(clf, eps=p.eps, alpha=p.step, steps=p.steps)
    elif name == "mim":
        atk = cls(clf, eps=p.eps, alpha=p.step, steps=p.steps, decay=p.decay)
    else:
        atk = cls(clf, eps=p.eps, alpha=p.step, steps=p.steps, random_start=p.random_start)
    atk.set_model_training_mode(model_training=False)
    return atk


def attack(clf: Classifier, name: str, p: AttackParams, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Adversarial images of one batch of [0, 1] pixels."""
    return make_attack(name, clf, p)(x, y.repeat(clf.draws)).detach()


@torch.no_grad()
def predictions(clf: Classifier, x: torch.Tensor) -> torch.Tensor:
    return clf(x).argmax(1)


def batches(x: torch.Tensor, y: torch.Tensor, size: int):
    """[0, 1] float batches of a uint8 (the prepared test split) or float image tensor."""
    for i in range(0, len(y), size):
        xb = x[i:i + size]
        yield (xb.float().div(255) if xb.dtype == torch.uint8 else xb), y[i:i + size]


class Bounds:
    """The largest L∞ distance to the clean image and the pixel range of every adversarial image."""

    def __init__(self, eps: float):
        self.eps, self.linf, self.lo, self.hi = eps, 0.0, 1.0, 0.0

    def update(self, x: torch.Tensor, adv: torch.Tensor) -> None:
        self.linf = max(self.linf, float((adv - x).abs().max()))
        self.lo, self.hi = min(self.lo, float(adv.min())), max(self.hi, float(adv.max()))

    def ok(self) -> bool:
        return self.linf <= self.eps + 1e-6 and self.lo >= 0.0 and self.hi <= 1.0

    def record(self) -> dict:
        return {"eps": self.eps, "linf": self.linf, "min": self.lo, "max": self.hi, "ok": self.ok()}


def robust_accuracy(clf: Classifier, name: str, p: AttackParams, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int, judge: list[Classifier] = ()) -> tuple[dict[str, float], Bounds]:
    """Robust accuracy of `clf` (and of each classifier in `judge` on the same adversarial images: transfer).

    Returns {"": clf's, "<i>": judge i's} accuracies and the bounds of the adversarial images.
    """
    bounds = Bounds(p.eps)
    hits = torch.zeros(1 + len(judge), dtype=torch.long)
    for xb, yb in batches(x, y, batch_size):
        adv = attack(clf, name, p, xb, yb)
        bounds.update(xb, adv)
        for i, c in enumerate([clf.__class__(clf.model, clf.mean, clf.std, clf.predict), *judge]):
            ok = (predictions(c, xb) == yb) & (predictions(c, adv) == yb)
            hits[i] += int(ok.sum())
    acc = (hits.double() / max(len(y), 1)).tolist()
    return {"": acc[0], **{str(i): a for i, a in enumerate(acc[1:])}}, bounds


def clean_accuracy(clf: Classifier, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    hits = sum(int((predictions(clf, xb) == yb).sum()) for xb, yb in batches(x, y, batch_size))
    return hits / max(len(y), 1)


# --------------------------------------------------------------------------- one run


def defences_of(run, hooks, data, workdir: Path, p: AdversarialParams) -> dict[str, Callable]:
    """The run's own predict hook (when a method defines one) and the block's test-time defences."""
    from curriculab.methods import build_methods
    from curriculab.methods.base import MethodContext

    out = {}
    own = next((m for m in hooks.methods if m.overrides("predict")), None)
    if own is not None:
        out[own.name] = own.predict
    if p.defences:
        ctx = MethodContext(run=run.config, data=data, device=data.device, run_dir=run.dir(workdir),
                            workdir=Path(workdir))
        for m in build_methods(p.defences, ctx):
            out[m.name] = m.predict
    return out


def evaluate_run(run, p: AdversarialParams, workdir: Path, sanity: bool = False) -> dict:
    """Every attack of the block on one finished run; with `sanity`, also the checks of `sanity_checks`."""
    from curriculab.engine.loop import load_trained
    from curriculab.evaluate.transfer import cpu_threads

    with cpu_threads(p.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        model, data, hooks = load_trained(run.config, run.dir(workdir), workdir, p.device)
        model.requires_grad_(False)  # gradients flow to the input only
        x, y = data.test
        if p.limit:
            x, y = x[:p.limit], y[:p.limit]
        plain = Classifier(model, data.mean, data.std)
        defs = {n: Classifier(model, data.mean, data.std, f) for n, f in defences_of(run, hooks, data, workdir,
                                                                                         p).items()}
        out: dict[str, Any] = {"adv_clean_acc": clean_accuracy(plain, x, y, p.batch_size), "adv_images": len(y)}
        for d, clf in defs.items():
            out[f"adv_{d}_clean_acc"] = clean_accuracy(clf, x, y, p.batch_size)
        bounds = {}
        for name, ap in p.resolved().items():
            acc, b = robust_accuracy(plain, name, ap, x, y, p.batch_size, list(defs.values()))
            out[f"adv_{name}_acc"], bounds[name] = acc[""], b.record()
            for i, (d, clf) in enumerate(defs.items()):
                out[f"adv_{d}_transfer_{name}_acc"] = acc[str(i)]
                eot = Classifier(model, data.mean, data.std, clf.predict, draws=p.eot_samples)
                acc_d, b = robust_accuracy(eot, name, ap, x, y, p.batch_size)
                out[f"adv_{d}_adaptive_{name}_acc"], bounds[f"{d}_adaptive_{name}"] = acc_d[""], b.record()
        out["_bounds"] = bounds
        if sanity:
            out["_sanity"] = sanity_checks(plain, p, x, y, out["adv_clean_acc"])
    return out


def sanity_checks(plain: Classifier, p: AdversarialParams, x: torch.Tensor, y: torch.Tensor, clean: float) -> dict:
    """Carlini et al. 2019's basic checks on one run: ε = 0 is the identity for every attack, accuracy
    does not increase with ε (PGD over `sweep`), and PGD is no weaker than FGSM at the block's ε."""
    attacks = p.resolved()
    zero = {}
    for name, ap in attacks.items():
        z = resolve_attack(name, AttackParams(**{**ap.model_dump(), "eps": 0.0,
                                                 "step": None if name != "pgd" else ap.step,
                                                 "steps": None if name == "fgsm" else ap.steps}), "")
        acc, b = robust_accuracy(plain, name, z, x, y, p.batch_size)
        zero[name] = {"robust": acc[""], "clean": clean, "linf": b.linf, "ok": acc[""] == clean and b.linf == 0}
    pgd = attacks.get("pgd", resolve_attack("pgd", AttackParams(), ""))
    fgsm = attacks.get("fgsm", resolve_attack("fgsm", AttackParams(), ""))
    sweep = []
    for eps in p.sweep:
        acc, b = robust_accuracy(plain, "pgd", pgd.model_copy(update={"eps": eps}), x, y, p.batch_size)
        sweep.append({"eps": eps, "robust": acc[""], "bounds_ok": b.ok()})
    monotone = all(b["robust"] <= a["robust"] + p.tolerance for a, b in zip(sweep, sweep[1:]))
    pair = {n: robust_accuracy(plain, n, ap, x, y, p.batch_size)[0][""] for n, ap in (("fgsm", fgsm), ("pgd", pgd))}
    return {"eps0": zero, "sweep": sweep, "monotone": monotone, "pgd_vs_fgsm": pair,
            "pgd_no_weaker": pair["pgd"] <= pair["fgsm"] + p.tolerance,
            "sweep_bounds_ok": all(s["bounds_ok"] for s in sweep)}


def accuracy_keys(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k.startswith("adv_") and isinstance(v, (int, float))
            and not math.isnan(v)}


# --------------------------------------------------------------------------- a table


def evaluate_table(spec, params, runs: list, block: dict, workdir: Path) -> int:
    """The evaluate step of an adversarial block: each selected run once (cached by settings and data), the
    sanity checks on the first. Results go to runs/eval/<table>/adversarial/<run-id>.json and to the run's
    MLflow record. Returns the number of runs attacked now."""
    from curriculab.executor import read_record
    from curriculab.fingerprint import evaluation_key, is_cached, write_cached
    from curriculab.store import store_root
    from curriculab.tracking import log_evaluation

    p = check_block(block, params.tables[spec.key], f"evaluate.{spec.key}.adversarial")
    todo = selected(runs, p)
    done = 0
    for i, run in enumerate(todo):
        rec = read_record(run.dir(workdir))
        target = out_dir(workdir, spec.key) / f"{run.run_id}.json"
        key = evaluation_key(p.model_dump(mode="json"), rec.get("data_checksum"), __name__, sanity=i == 0)
        if is_cached(target, key):
            continue
        t0 = time.perf_counter()
        metrics = evaluate_run(run, p, workdir, sanity=i == 0)
        write_cached(target, key, metrics)
        print(f"{spec.id} [{i + 1}/{len(todo)}] {run.row} | {run.column} | seed {run.seed}: "
              + ", ".join(f"{a} {metrics[f'adv_{a}_acc']:.3f}" for a in p.attacks)
              + f" ({time.perf_counter() - t0:.1f} s)", flush=True)
        log_evaluation(store_root(workdir, params.store.root), params.tracking, spec.id, run.run_id,
                       accuracy_keys(metrics))
        done += 1
    return done
