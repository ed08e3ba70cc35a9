"""Optimisers (SGD, Nesterov, Adam) and learning-rate schedules stepped once per epoch."""

from __future__ import annotations

import math

import torch

from curriculab.config import OptimizerParams, ScheduleParams


def build_optimizer(params, cfg: OptimizerParams) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


class Schedule:
    """lr multiplier as a function of the epoch (and, for `plateau`, of the validation loss)."""

    def __init__(self, opt: torch.optim.Optimizer, cfg: ScheduleParams, epochs: int):
        self.opt, self.cfg, self.epochs = opt, cfg, epochs
        self.base = [g["lr"] for g in opt.param_groups]
        self.best, self.bad, self.plateau_scale = math.inf, 0, 1.0

    def factor(self, epoch: int) -> float:
        """Multiplier for `epoch` (0-based)."""
        c = self.cfg
        warm = min(1.0, (epoch + 1) / c.warmup_epochs) if c.warmup_epochs else 1.0
        if c.name == "multistep":
            f = c.gamma ** sum(epoch >= m for m in c.milestones)
        elif c.name == "step":
            f = c.gamma ** (epoch // c.step_size)
        elif c.name == "cosine":
            f = 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        elif c.name == "plateau":
            f = self.plateau_scale
        else:
            f = 1.0
        return warm * f

    def set_epoch(self, epoch: int) -> float:
        f = self.factor(epoch)
        for g, b in zip(self.opt.param_groups, self.base):
            g["lr"] = b * f
        return self.base[0] * f

    def observe(self, val_loss: float) -> None:
        """Plateau: multiply by gamma after `patience` epochs without a better validation loss."""
        if self.cfg.name != "plateau":
            return
        if val_loss < self.best - 1e-12:
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
            if self.bad >= self.cfg.patience:
                self.plateau_scale *= self.cfg.gamma
                self.bad = 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad": self.bad, "plateau_scale": self.plateau_scale}

    def load_state_dict(self, s: dict) -> None:
        self.best, self.bad, self.plateau_scale = s["best"], s["bad"], s["plateau_scale"]
