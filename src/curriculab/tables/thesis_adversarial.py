"""thesis.t33 (thesis Tables 3.3 / 3.7): clean, FGSM, BIM, MIM and PGD accuracy for the baseline and CSA, each
± TTSA attacked by transfer and adaptively, on the runs of thesis.t31."""

from __future__ import annotations

from curriculab.tables.robust import attack_label
from curriculab.tables.spec import Claim, TableSpec, register_table
from curriculab.tables.thesis_chosen import ADVERSARIAL, SUM_AUGMENTATION

_THESIS = ("clean", "fgsm", "bim", "mim", "pgd")
register_table(TableSpec(
    id="thesis.t33",
    title="Adversarial accuracy: clean, FGSM, BIM, MIM, PGD for the baseline and CSA, each ± TTSA "
          "(thesis Tables 3.3 / 3.7)",
    source="thesis",
    metrics=["adv_pgd_acc", "adv_fgsm_acc", "adv_bim_acc", "adv_mim_acc", "adv_clean_acc", "test_acc"],
    paper={"baseline · network": dict(zip(_THESIS, (95.32, 24.08, 0.2, 0.0, 0.0), strict=True)),
           "baseline · + ttsa (transfer)": dict(zip(_THESIS, (94.38, 54.0, 17.2, 9.19, 3.22), strict=True))},
    paper_note="Thesis Table 3.3 (= Table 3.7), CIFAR-10, WRN-28-10 (%). Its rows are 'Baseline' and 'CSA' "
               "(Table 3.7: 'Sum-Aug'), but §3.7.3 says the TTSA experiment was run on the baseline model "
               "(λ = 1, K = 4, C = 16), so the second row is quoted beside `baseline · + ttsa (transfer)`, the "
               "row it most likely corresponds to; our `csa_k4 · network` row is the other reading. Quoted, not "
               "measured here.",
    claims=[Claim(f"CSA (start K = 4) is more robust than the baseline ({attack_label(a)})", "csa_k4", "baseline",
                  metric=f"adv_{a}_acc") for a in ("fgsm", "bim", "mim", "pgd")],
    chosen_here={**SUM_AUGMENTATION, **ADVERSARIAL},
    notes="The runs are those of thesis.t31 (identical settings, hence identical run ids: they are reused, not "
          "trained again). The official script's own TTSA variant (commented out there) "
          "mixes x·(1 − λ) + λ·random with λ = 0.5 and 64 mixes and attacks through the averaged logits, "
          "with its mixes accumulating over the loop; this table uses the thesis' TTSA (λ = 1, K = 4, C = 16). "
          "The official script counts a sample as robust when its attacked prediction is correct (clean "
          "errors included); here it must be correct both clean and attacked. The official BIM / MIM do not "
          "project onto the ε-ball; with step ε / 10 over 10 steps they cannot leave it, so torchattacks' "
          "projected versions coincide.",
))
