"""Settings of the VAE task of CBS Table 6 (evaluate/vae.py): its `task_params` and primary metric."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from curriculab.config import Strict
from curriculab.engine.task_settings import declare_task


class VAEParams(Strict):
    """`task_params` of task `vae`."""

    beta: Annotated[float, Field(gt=0)] = 1.0
    nll_samples: Annotated[int, Field(ge=1)] = 500  # k of the importance-weighted NLL (He et al.: 500)
    eval_limit: Annotated[int, Field(ge=2)] | None = None  # test images for NLL / MI / AU (None: all)
    au_threshold: Annotated[float, Field(gt=0)] = 0.01
    batch_size: Annotated[int, Field(ge=1)] = 100  # images per IW-NLL pass (× nll_samples decodes)


# primary metric −ELBO, lower is better
VAE = declare_task("vae", "curriculab.evaluate.vae:VAETask", VAEParams, primary="nelbo", higher_is_better=False)
