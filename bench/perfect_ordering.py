"""Perfect Ordering speed (thesis §2.2; targets from the Perfect Ordering issue), on the offline data.

(1) All 720 batch orders of one epoch trained and tested as one stack of models (functional_call + vmap),
    against the same 720 trained and tested one model at a time (nn.Module + torch.optim.SGD), side by
    side in one process: target ≥ 20× on the 2-core CPU. The loop's networks are checked against the stack.
(2) The whole offline thesis.t21 for one seed (104,400 trainings and their test evaluations): target
    ≤ 5 minutes on the 2-core CPU. Wall and CPU (process) time are both printed: on a shared machine the
    CPU time is what an idle core would need.

Needs the prepared digits (`curriculab prepare`). Settings come from params.yaml's `tables.thesis_t21`.

    python bench/perfect_ordering.py                # both, 1 thread
    python bench/perfect_ordering.py --skip-full    # (1) only
"""

from __future__ import annotations

import argparse
import copy
import itertools
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from curriculab.engine.batched import SGDConfig, Stack, evaluate
from curriculab.models import create_model
from curriculab.project import load_params
from curriculab.runners.perfect_ordering import PerfectOrderingParams, _data, run_perfect_ordering, train_orders
from curriculab.tables.spec import expand_table, get_spec


def clock():
    return time.perf_counter(), time.process_time()


def since(t):
    return time.perf_counter() - t[0], time.process_time() - t[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loop", type=int, default=720, help="orders trained one at a time (all 720 by default)")
    ap.add_argument("--skip-full", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = expand_table(get_spec("thesis.t21"), load_params(args.params))[0].config
    p = PerfectOrderingParams.model_validate(run.runner)
    gen = torch.Generator().manual_seed(run.seed)
    x, y, xt, yt = _data(run, p, Path("."), gen)
    torch.manual_seed(run.seed)
    model = create_model(run.model.name, x.shape[1], len(p.classes), run.model.width)
    o = run.train.optimizer
    cfg = SGDConfig(o.lr, o.momentum, o.nesterov, o.weight_decay)
    bs = run.train.batch_size
    nb = len(y) // bs
    split = torch.randperm(len(y), generator=gen).view(nb, bs)
    xb, yb = x[split], y[split]
    perms = torch.tensor(list(itertools.permutations(range(nb))))

    # warm-up, untimed: the first vmapped call builds its kernels (~3 s here), once per process; thesis.t21
    # pays it once for its 13 epochs, the loop spreads its own over the networks
    evaluate(model, train_orders(model, Stack.of(model, 1), torch.zeros(6, dtype=torch.long), perms[:6], xb, yb, cfg),
             xt, yt, p.eval_batch_size)
    t = clock()
    stack = train_orders(model, Stack.of(model, 1), torch.zeros(len(perms), dtype=torch.long), perms, xb, yb, cfg)
    loss, acc = evaluate(model, stack, xt, yt, p.eval_batch_size)
    batched = since(t)

    t = clock()
    worst = 0.0
    for i in range(args.loop):
        m = copy.deepcopy(model).train()
        opt = torch.optim.SGD(m.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                              weight_decay=o.weight_decay)
        for b in perms[i].tolist():
            out = F.cross_entropy(m(xb[b]), yb[b])
            opt.zero_grad()
            out.backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            test_loss = F.cross_entropy(m(xt), yt).item()
        worst = max(worst, abs(test_loss - loss[i].item()))
    looped = since(t)
    scale = len(perms) / args.loop
    print(f"{run.model.name} width {run.model.width}, {len(y)} training and {len(yt)} test images, batch {bs}, "
          f"{len(perms)} orders, {args.threads} thread(s)")
    print(f"(1) batched: {batched[0]:.2f} s wall ({batched[1]:.2f} s CPU); one at a time: {looped[0] * scale:.2f} s "
          f"wall ({looped[1] * scale:.2f} s CPU){' (scaled from ' + str(args.loop) + ')' if scale != 1 else ''}; "
          f"ratio {looped[0] * scale / batched[0]:.1f}× wall, {looped[1] * scale / batched[1]:.1f}× CPU "
          f"(target ≥ 20×); largest test-loss difference {worst:.1e}")
    if args.skip_full:
        return
    with tempfile.TemporaryDirectory() as d:
        t = clock()
        rec = run_perfect_ordering(run, Path(d), Path("."))
        full = since(t)
    print(f"(2) offline thesis.t21, seed {run.seed}: {rec['final']['networks']:,} networks in {full[0]:.0f} s wall, "
          f"{full[1]:.0f} s CPU (target ≤ 300 s)")


if __name__ == "__main__":
    main()
