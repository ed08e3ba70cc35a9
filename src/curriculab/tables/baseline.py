"""The harness's own table: plain training on the offline datasets (no paper claim)."""

from curriculab.tables.figures import curves
from curriculab.tables.spec import TableSpec, register_table

register_table(TableSpec(
    id="baseline",
    title="Plain training through the harness (baseline method)",
    source="harness",
    metrics=["test_acc", "test_acc_at_best_val"],
    figures=[lambda res, out: curves(res, "val_acc", "validation accuracy", out / "baseline.curves",
                                     title="baseline: validation accuracy per epoch (mean ± std over seeds)")],
    notes="`test_acc` is the final epoch; `test_acc_at_best_val` is the test accuracy at the epoch with the best "
          "validation accuracy (model selection on the validation split, never on the test split).",
))
