"""Settings of the transfer evaluations (evaluate/transfer.py): the feature probe of CBS Table 3 and the
zero-shot domain adaptation of CBS Table 5 (`evaluate.<table>`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from curriculab.config import Strict


class ProbeParams(Strict):
    """CBS §4 'Feature Extraction': frozen backbone, 3-layer MLP (500 hidden, ReLU), Adam 1e-4, 20 epochs."""

    targets: Annotated[list[str], Field(min_length=1)] = ["digits", "syndigits"]
    hidden: Annotated[int, Field(ge=1)] = 500
    layers: Annotated[int, Field(ge=1)] = 3  # linear layers (3: two hidden layers of `hidden` units)
    lr: Annotated[float, Field(gt=0)] = 1e-4
    epochs: Annotated[int, Field(ge=1)] = 20
    batch_size: Annotated[int, Field(ge=1)] = 128
    subset_per_class: Annotated[int, Field(ge=1)] | None = None  # target training items per class
    test_limit: Annotated[int, Field(ge=1)] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1)] = 1  # CPU threads, fixed so the numbers do not depend on the machine


class ZeroShotParams(Strict):
    """CBS §4 'Zero-shot Domain Adaptation': train on the source (the column), test on the target."""

    targets: Annotated[dict[str, str], Field(min_length=1)]  # table column → target dataset
    oracle: bool = True  # also report the target-only oracle (same settings, trained on the target)
    # target dataset → `data.subset` of its oracle (default: the whole training split), e.g. ADDA's 1,800 USPS
    oracle_subset: dict[str, Annotated[int, Field(ge=1)]] = {}
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1)] = 1  # CPU threads, fixed so the numbers do not depend on the machine
