"""`chosen_here` lists of the thesis tables (Simionescu 2020): the paper-profile settings the thesis does not
state (issue 17). Settings it states (batch sizes, lr, momentum, weight decay, schedules, models, subsets,
K values, λ / K / C of TTSA) are not listed; deviations the table notes explain are not repeated."""

from __future__ import annotations

NOT_STATED = "not stated; chosen here"

# thesis.t21, Perfect Ordering (§2.2 states MNIST 0/1, 24 + 24 train, 2048 test, batch 8, 13 epochs, 12 clusters)
PERFECT_ORDERING = {
    "train.optimizer.name": "SGD (not stated for this experiment; chosen here)",
    "train.optimizer.lr": f"0.05 ({NOT_STATED})",
    "train.optimizer.momentum": f"0.9 ({NOT_STATED})",
    "train.optimizer.nesterov": f"true ({NOT_STATED})",
    "train.optimizer.weight_decay": f"1e-4 ({NOT_STATED})",
    "train.schedule.name": f"constant lr ({NOT_STATED})",
    "data.augment.normalize": f"true ({NOT_STATED})",
    "seed": f"0, one seed ({NOT_STATED})",
}

# thesis.t22-t24, POA (§2.4 states CIFAR-10, PreResNet-56, SGD 0.05 / wd 1e-4 / Nesterov 0.9, batch 128,
# normalise + random flips and crops, lr halved every 30 epochs)
POA = {
    "data.augment.crop_pad": f"4-pixel padding for the random crops ({NOT_STATED})",
    "seed": "0, 1, 2 (the thesis ran one seed, not named)",
}

# Sum Augmentation family (§3.7 states batch 100, lr 0.05, ×0.5 after 300 stagnant steps, SGD Nesterov 0.9,
# wd 1e-4, WRN-40-4 / WRN-28-10, the subsets, the start K values)
SUM_AUGMENTATION = {
    "data.augment.crop_pad": f"random 4-pixel-pad crops ({NOT_STATED}: §3.7 names no augmentation)",
    "data.augment.flip": f"random horizontal flips ({NOT_STATED})",
    "data.augment.normalize": f"per-channel normalisation ({NOT_STATED})",
    "train.epochs": f"1500 / 600 / 200 at 100 / 500 / 5000 per class, 15k / 30k / 90k steps ({NOT_STATED})",
    "methods.csa.patience": f"60 epochs without improvement end a cascade phase ({NOT_STATED})",
    "methods.csa.uneven": "K = 8 with batch 100: `drop` the remainder (not stated; the official code's)",
    "methods.csa.reset_optimizer": f"momentum cleared when a phase restores its best checkpoint ({NOT_STATED})",
    "methods.csa.lr_reset": f"each phase restarts the lr schedule at 0.05 ({NOT_STATED})",
    "seed": "0, 1, 2 (the thesis ran one run each, seed not named)",
}
# thesis.t34-t36 (full data only): shorter phase patience
SUM_AUGMENTATION_FULL = {**SUM_AUGMENTATION,
                         "methods.csa.patience": f"8 epochs without improvement end a cascade phase ({NOT_STATED})"}
_SP = "not stated in the thesis; SamplePairing's CIFAR setting"
MIXING_BASELINES = {
    "methods.mixup.alpha": "α = 1 (not stated in the thesis; mixup's CIFAR setting)",
    "methods.sample_pairing.warmup": f"starts after 100 epochs ({_SP})",
    "methods.sample_pairing.on_epochs": f"8 epochs on ({_SP})",
    "methods.sample_pairing.off_epochs": f"2 epochs off ({_SP})",
    "methods.mixup.patience": f"same phase patience as CSA ({NOT_STATED})",
    "methods.sample_pairing.patience": f"same phase patience as CSA ({NOT_STATED})",
}
GCSA = {
    "methods.gcsa.cascade_epochs": f"100 epochs for t to go 0 → 1 (Algorithm 3's nr_epochs; {NOT_STATED})",
    "methods.gcsa.patience": f"8 epochs without improvement end fine-tuning ({NOT_STATED})",
    "methods.gcsa.reset_optimizer": f"momentum cleared when fine-tuning starts from the best checkpoint ({NOT_STATED})",
    "methods.gcsa.lr_reset": f"fine-tuning restarts the lr schedule at 0.05 ({NOT_STATED})",
    "methods.gcsa.uneven": "`drop` the remainder when K does not divide 100 (not stated; the official code's)",
}
# thesis.t33: the thesis names FGSM, BIM, MIM and PGD and none of their settings
_OFFICIAL_ATTACK = "the official robustness script's; the thesis states none"
ADVERSARIAL = {
    "evaluate.adversarial.attacks.pgd.eps": f"L∞ ε = 8/255 for all four attacks ({_OFFICIAL_ATTACK})",
    "evaluate.adversarial.attacks.pgd.steps": f"10 iterations for BIM, MIM and PGD ({_OFFICIAL_ATTACK})",
    "evaluate.adversarial.attacks.pgd.step": f"PGD step 2/255, no random start ({_OFFICIAL_ATTACK})",
    "evaluate.adversarial.attacks.bim.step": f"BIM and MIM step ε/10 ({_OFFICIAL_ATTACK})",
    "evaluate.adversarial.attacks.mim.decay": f"MIM momentum μ = 1.0 ({_OFFICIAL_ATTACK})",
    "evaluate.adversarial.eot_samples": f"8 TTSA draws per adaptive-attack gradient ({NOT_STATED})",
}
