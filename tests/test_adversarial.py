"""Adversarial evaluation: the normalising wrapper against analytic FGSM, ε = 0, the EOT gradient, bad input,
and one table end to end (attack, cache, sanity checks, report section)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from curriculab.config import ConfigError
from curriculab.evaluate.adversarial import (
    ATTACKS,
    AttackParams,
    Classifier,
    attack,
    resolve_attack,
    robust_accuracy,
)
from curriculab.project import load_params


def linear_classifier(seed: int = 0, channels: int = 2, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(classes, channels * 16, generator=g))
        model[1].bias.copy_(torch.randn(classes, generator=g))
    mean = torch.tensor([0.3, 0.6])[:channels].reshape(1, channels, 1, 1)
    std = torch.tensor([0.2, 0.5])[:channels].reshape(1, channels, 1, 1)
    x = 0.2 + 0.6 * torch.rand(8, channels, 4, 4, generator=g)  # away from the [0, 1] borders
    y = torch.randint(0, classes, (8,), generator=g)
    return model.eval(), mean, std, x, y


def test_fgsm_through_the_wrapper_equals_analytic_fgsm_on_a_linear_model():
    model, mean, std, x, y = linear_classifier()
    eps = 0.03
    adv = attack(Classifier(model, mean, std), "fgsm", resolve_attack("fgsm", AttackParams(eps=eps), ""), x, y)
    w, b = model[1].weight, model[1].bias
    z = ((x - mean) / std).flatten(1)
    p = torch.softmax(z @ w.T + b, 1)
    grad_z = (p - F.one_hot(y, 3).float()) @ w  # ∂CE/∂z of a linear model: (softmax − onehot)·W
    grad_x = grad_z.reshape(x.shape) / std  # the normalisation layer: ∂z/∂x = 1/σ per channel
    expected = (x + eps * grad_x.sign()).clamp(0, 1)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert (adv - x).abs().max() <= eps + 1e-6


@pytest.mark.parametrize("name", list(ATTACKS))
def test_eps_zero_is_the_identity(name):
    model, mean, std, x, y = linear_classifier(1)
    clf = Classifier(model, mean, std)
    ap = resolve_attack(name, AttackParams(eps=0.0), "")
    assert torch.equal(attack(clf, name, ap, x, y), x)
    acc, bounds = robust_accuracy(clf, name, ap, x, y, batch_size=3)
    clean = float((model((x - mean) / std).argmax(1) == y).double().mean())
    assert acc[""] == pytest.approx(clean) and bounds.linf == 0 and bounds.ok()


def test_defaults_are_the_official_robustness_script():
    pgd, bim, mim, fgsm = (resolve_attack(n, AttackParams(), "") for n in ("pgd", "bim", "mim", "fgsm"))
    assert pgd.eps == bim.eps == mim.eps == fgsm.eps == pytest.approx(8 / 255)
    assert (pgd.steps, pgd.step, pgd.random_start) == (10, pytest.approx(2 / 255), False)
    assert (bim.steps, bim.step) == (10, pytest.approx(8 / 255 / 10))
    assert (mim.steps, mim.step, mim.decay) == (10, pytest.approx(8 / 255 / 10), 1.0)
    assert fgsm.steps == 1


def noisy_predict(model, z):
    """A randomised predict hook: one random draw of additive noise per call (global torch RNG)."""
    return model(z + 0.5 * torch.randn_like(z))


def test_eot_gradient_is_the_mean_of_the_per_draw_gradients():
    model, mean, std, x, y = linear_classifier(2)
    draws = 5
    eot = Classifier(model, mean, std, noisy_predict, draws=draws)
    one = Classifier(model, mean, std, noisy_predict)

    torch.manual_seed(7)
    xe = x.clone().requires_grad_(True)
    (g_eot,) = torch.autograd.grad(F.cross_entropy(eot(xe), y.repeat(draws)), xe)
    torch.manual_seed(7)  # the same draws, one at a time
    per = []
    for _ in range(draws):
        xs = x.clone().requires_grad_(True)
        per.append(torch.autograd.grad(F.cross_entropy(one(xs), y), xs)[0])
    mean_grad = torch.stack(per).mean(0)
    assert torch.allclose(g_eot, mean_grad, atol=1e-7)
    assert not torch.allclose(per[0], per[1])  # the draws differ: the average is not trivial

    # and the attack steps along it: FGSM through the EOT classifier = x + ε·sign(mean gradient)
    torch.manual_seed(7)
    adv = attack(eot, "fgsm", resolve_attack("fgsm", AttackParams(eps=0.02), ""), x, y)
    assert torch.allclose(adv, (x + 0.02 * mean_grad.sign()).clamp(0, 1), atol=1e-6)


# --------------------------------------------------------------------------- bad input


def write_params(tmp_path, adversarial: dict, extra_evaluate: dict | None = None):
    params = {
        "prepare": {"datasets": ["digits"]},
        "tracking": {"enabled": False},
        "tables": {"baseline": {"seeds": [0], "run": {"model": {"name": "small_cnn", "width": 0.25}},
                                "columns": {"digits": {"data": {"dataset": "digits"}}},
                                "rows": {"baseline": {"methods": {"baseline": {}}}}}},
        "evaluate": {"baseline": {"adversarial": adversarial, **(extra_evaluate or {})}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("block, message", [
    ({"attacks": {"pgd": {"eps": -0.1}}}, "evaluate.baseline.adversarial.attacks.pgd.eps"),
    ({"attacks": {"fgsm": {"eps": 1.5}}}, "evaluate.baseline.adversarial.attacks.fgsm.eps"),
    ({"attacks": {"bim": {"steps": 0}}}, "evaluate.baseline.adversarial.attacks.bim.steps"),
    ({"attacks": ["pgd", "fgsn"]}, "unknown attack 'fgsn'; did you mean 'fgsm'"),
    ({"rows": ["cbs"]}, "evaluate.baseline.adversarial.rows.0: unknown row 'cbs'"),
    ({"columns": ["fashion_mnist"]}, "evaluate.baseline.adversarial.columns.0: unknown column"),
    ({"attacks": {"fgsm": {"steps": 5}}}, "attacks.fgsm.steps: FGSM is a single step"),
    ({"attacks": {"bim": {"random_start": True}}}, "attacks.bim.random_start: only PGD"),
    ({"defences": {"baseline": {}}}, "defences.baseline: method 'baseline' has no predict hook"),
    ({"defences": {"nosuch": {}}}, "evaluate.baseline.adversarial.defences.nosuch: unknown method"),
])
def test_bad_adversarial_blocks_are_one_line_errors(tmp_path, block, message):
    with pytest.raises(ConfigError) as err:
        load_params(write_params(tmp_path, block))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_validate_command_rejects_a_bad_block(tmp_path, capsys):
    from curriculab.cli import main

    assert main(["validate", str(write_params(tmp_path, {"attacks": {"pgd": {"eps": 2}}}))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: evaluate.baseline.adversarial.attacks.pgd.eps") and "\n" not in err


def test_an_adversarial_block_attaches_to_a_table_without_an_evaluate_step(tmp_path):
    params = load_params(write_params(tmp_path, {"attacks": ["fgsm", "pgd"], "limit": 50}))
    assert params.evaluate["baseline"]["adversarial"]["limit"] == 50
    with pytest.raises(ConfigError, match="no evaluate step of its own"):
        load_params(write_params(tmp_path, {"attacks": ["fgsm"]}, {"targets": ["digits"]}))


# --------------------------------------------------------------------------- end to end


def test_table_end_to_end(workdir):
    """Train two tiny runs, attack them through the evaluate command (results on disk and in the runs' MLflow
    records), render the report; a failed sanity check marks every verdict unreliable."""
    import mlflow

    from curriculab.cli import main
    from curriculab.tables.report import render_table
    from curriculab.tables.result import load_result
    from curriculab.tracking import tracking_uri

    params_path = workdir / "params.yaml"
    params_path.write_text(yaml.safe_dump({
        "prepare": {"datasets": ["digits", "syndigits"]},
        "executor": {"workers": 1},
        "tables": {"robust_methods": {
            "seeds": [0],
            "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"epochs": 2, "device": "cpu"}},
            "columns": {"digits": {"data": {"dataset": "digits"}}},
            "rows": {"baseline": {"methods": {"baseline": {}}},
                     "dp_class": {"methods": {"data_parameters": {"curriculum": "class"}}}}}},
        "evaluate": {"robust_methods": {"adversarial": {"attacks": ["fgsm", "bim", "mim", "pgd"], "limit": 120,
                                                        "batch_size": 50, "device": "cpu"}}}}))
    args = ["--params", str(params_path), "--workdir", str(workdir)]
    assert main([*args, "train", "robust_methods"]) == 0
    assert main([*args, "evaluate", "robust_methods"]) == 0
    files = sorted((workdir / "runs" / "eval" / "robust_methods" / "adversarial").glob("*.json"))
    assert len(files) == 2
    recs = [json.loads(f.read_text()) for f in files]
    for rec in recs:
        assert rec["adv_images"] == 120
        for a in ATTACKS:
            assert 0 <= rec[f"adv_{a}_acc"] <= rec["adv_clean_acc"]
        assert all(b["ok"] for b in rec["_bounds"].values())
    sanity = next(r for r in recs if "_sanity" in r)["_sanity"]
    assert sanity["monotone"] and sanity["pgd_no_weaker"] and all(z["ok"] for z in sanity["eps0"].values())
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert main([*args, "evaluate", "robust_methods"]) == 0  # cached: not attacked again
    assert [f.stat().st_mtime_ns for f in files] == mtimes

    params = load_params(params_path)
    mlflow.set_tracking_uri(tracking_uri(workdir, params.tracking))
    df = mlflow.search_runs(experiment_names=["robust.methods"])
    child = df[df["tags.run_id"] == files[0].stem].iloc[0]
    assert child["metrics.evaluate.adv_pgd_acc"] == pytest.approx(recs[0]["adv_pgd_acc"])

    res = load_result("robust.methods", params, workdir)
    assert "adv_pgd_acc" in res.finals().columns
    md, _, claims = render_table(res)
    assert "## Adversarial robustness" in md and "### Sanity checks" in md and "| baseline | network |" in md
    assert "**FAILED**" not in md and claims and not any("unreliable" in c["verdict"] for c in claims)

    first = next(f for f, r in zip(files, recs) if "_sanity" in r)
    broken = json.loads(first.read_text())
    broken["_sanity"]["sweep"][-1]["robust"] = 1.0  # accuracy rising with ε
    broken["_sanity"]["monotone"] = False
    first.write_text(json.dumps(broken))
    md, _, claims = render_table(res)
    assert "**FAILED**" in md and "every verdict of this table is marked unreliable" in md
    assert claims and all(c["verdict"].startswith("unreliable (") for c in claims)


def test_a_run_finished_in_another_table_is_reused_not_trained(workdir):
    from curriculab.cli import main
    from curriculab.executor import read_record

    block = {"seeds": [0], "run": {"model": {"name": "small_cnn", "width": 0.25},
                                   "train": {"epochs": 1, "device": "cpu"}},
             "columns": {"digits": {"data": {"dataset": "digits"}}},
             "rows": {"baseline": {"methods": {"baseline": {}}}}}
    params_path = workdir / "params.yaml"
    params_path.write_text(yaml.safe_dump({"prepare": {"datasets": ["digits", "syndigits"]},
                                           "tracking": {"enabled": False},
                                           "tables": {"baseline": block, "robust_methods": block}}))
    args = ["--params", str(params_path), "--workdir", str(workdir)]
    assert main([*args, "train", "baseline"]) == 0
    assert main([*args, "train", "robust_methods"]) == 0
    (src,) = (workdir / "runs" / "baseline").iterdir()
    copy = workdir / "runs" / "robust_methods" / src.name
    rec = read_record(copy)
    assert rec["reused_from"] == "baseline" and rec["labels"]["table"] == "robust.methods"
    assert rec["final"] == read_record(src)["final"]
    assert (copy / "checkpoint.pt").samefile(src / "checkpoint.pt")  # a hard link, not a second copy
    assert read_record(src)["labels"]["table"] == "baseline" and "reused_from" not in read_record(src)
