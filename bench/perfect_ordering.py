"""Perfect Ordering speed (thesis §2.2; targets from the Perfect Ordering issue), on the offline data.

(1) All 720 batch orders of one epoch trained and tested as thesis.t21 does it (stacks of models,
    functional_call + vmap, in its chunks and test batches), against the same 720 trained and tested one
    model at a time (nn.Module + torch.optim.SGD), side by side in one process: target ≥ 20× on the 2-core
    CPU. The loop's networks are checked against the stack; the loop's training and test passes are timed
    apart, since its test pass (one dense forward of the test set per network) bounds the ratio.
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

from curriculab.engine.batched import SGDConfig, Stack
from curriculab.models import create_model
from curriculab.project import load_params
from curriculab.runners.perfect_ordering import PerfectOrderingParams, _data, run_perfect_ordering, train_and_test
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
    ap.add_argument("--repeat", type=int, default=3, help="batched epochs timed; the median is reported")
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
    def batched_epoch(n: int):
        """n orders from the initial network as thesis.t21 trains and tests them (its chunk and test batch)."""
        return train_and_test(model, Stack.of(model, 1), torch.zeros(n, dtype=torch.long), perms[:n], xb, yb, xt,
                              yt, cfg, p)

    batched_epoch(6)
    times = []
    for _ in range(args.repeat):
        t = clock()
        _, loss, acc = batched_epoch(len(perms))
        times.append(since(t))
    batched = sorted(times)[len(times) // 2]  # the median wall time (with its CPU time)

    t = clock()
    worst, loop_test = 0.0, 0.0  # loop_test: wall seconds of the loop's test passes
    for i in range(args.loop):
        m = copy.deepcopy(model).train()
        opt = torch.optim.SGD(m.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                              weight_decay=o.weight_decay)
        for b in perms[i].tolist():
            out = F.cross_entropy(m(xb[b]), yb[b])
            opt.zero_grad()
            out.backward()
            opt.step()
        t_test = time.perf_counter()
        m.eval()
        with torch.no_grad():
            test_loss = F.cross_entropy(m(xt), yt).item()
        loop_test += time.perf_counter() - t_test
        worst = max(worst, abs(test_loss - loss[i].item()))
    looped = since(t)
    scale = len(perms) / args.loop
    loop_test *= scale
    print(f"{run.model.name} width {run.model.width}, {len(y)} training and {len(yt)} test images, batch {bs}, "
          f"{len(perms)} orders, {args.threads} thread(s); batched in chunks of {p.chunk} networks, tested "
          f"{p.eval_batch_size} images at a time")
    scaled = f" (scaled from {args.loop})" if scale != 1 else ""
    print(f"(1) batched (median of {args.repeat}): {batched[0]:.2f} s wall ({batched[1]:.2f} s CPU); one at a time: "
          f"{looped[0] * scale:.2f} s wall ({looped[1] * scale:.2f} s CPU){scaled}; "
          f"ratio {looped[0] * scale / batched[0]:.1f}× wall, {looped[1] * scale / batched[1]:.1f}× CPU "
          f"(target ≥ 20×); largest test-loss difference {worst:.1e}")
    print(f"    the loop's test passes take {loop_test:.2f} s of its {looped[0] * scale:.2f} s: with training free, "
          f"20× needs the batched test pass under {looped[0] * scale / 20:.2f} s, "
          f"{loop_test / (looped[0] * scale / 20):.1f}× faster than the same networks tested one at a time")
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
