"""GPU-path defects of the scale-out issue that can be shown on the CPU: device per worker, no host syncs in
evaluation, batches in the model's memory format, deterministic pooling."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from curriculab import executor
from curriculab.engine.tasks import get_task


def _whoami(_):
    time.sleep(0.3)  # keep both workers busy so that tasks spread over them
    return os.getpid(), executor.worker_slot()


def test_each_worker_process_keeps_one_device_slot():
    """The GPU (and the progress line) belongs to the worker process, not to the run's index: with the
    index, two workers could train on one GPU while another GPU idled."""
    with executor.worker_pool(2, threads=1) as pool:
        got = list(pool.map(_whoami, range(6)))
    slots: dict[int, set[int]] = {}
    for pid, slot in got:
        slots.setdefault(pid, set()).add(slot)
    assert all(len(s) == 1 for s in slots.values()), slots
    assert sorted(s.pop() for s in slots.values()) == list(range(len(slots))), slots


# --------------------------------------------------------------------------- host↔device syncs

SYNCS = {"__float__", "__int__", "__bool__", "item", "tolist", "cpu", "numpy"}  # device → host reads
UPLOADS = {"tensor", "as_tensor"}  # host values copied to the device (a sync from pageable memory)


class SyncCounter(TorchFunctionMode):
    """Counts the calls that wait for the device (on a GPU) while a block runs."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []
        self.uploads = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in SYNCS:
            self.calls.append(name)
        elif (name in UPLOADS and kwargs.get("device") is not None) or _upload(name, args, kwargs):
            self.calls.append(name)
            self.uploads += 1
        return func(*args, **kwargs)


def _upload(name: str, args, kwargs) -> bool:
    """`t.to(x)` / `t.to(device)` / `dst.copy_(t)` moving a host tensor to another device."""
    if name == "to" and args and isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu":
        target = kwargs.get("device", args[1] if len(args) > 1 else None)
        target = target.device if isinstance(target, torch.Tensor) else target
        return isinstance(target, (str, torch.device)) and torch.device(target).type != "cpu"
    if name == "copy_" and len(args) > 1 and all(isinstance(a, torch.Tensor) for a in args[:2]):
        return args[1].device.type == "cpu" and args[0].device.type != "cpu"
    return False


def _syncs(fn, uploads_only: bool = False) -> int:
    with SyncCounter() as counter:
        fn()
    return counter.uploads if uploads_only else len(counter.calls)


def _batches(n: int, classes: int = 4):
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(8, 1, 8, 8, generator=g), torch.randint(classes, (8,), generator=g)) for _ in range(n)]


def test_classification_evaluation_syncs_once_whatever_the_number_of_batches():
    task = get_task("classification", {})
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    one, many = (_syncs(lambda b=b: task.evaluate(model, _batches(b))) for b in (1, 6))
    assert one == many, (one, many)


def test_vae_evaluation_syncs_once_whatever_the_number_of_batches():
    from curriculab.evaluate.vae import VAETask

    task = VAETask(VAETask.Params())
    task._checked = True  # the [0, 1] check reads the first batch once per run, by design

    def model(x):
        n = len(x)
        return torch.zeros(n, 1, 8, 8), torch.zeros(n, 2), torch.zeros(n, 2)

    one, many = (_syncs(lambda b=b: task.evaluate(model, _batches(b))) for b in (1, 6))
    assert one == many, (one, many)


def test_transfer_accuracy_syncs_once_whatever_the_number_of_batches():
    from curriculab.evaluate.transfer import accuracy

    class Data:
        def __init__(self, n):
            self.batches = _batches(n)

        def eval_batches(self, split, batch_size):
            return iter(self.batches)

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    one, many = (_syncs(lambda b=b: accuracy(model, lambda m, x: m(x), Data(b))) for b in (1, 6))
    assert one == many, (one, many)


def test_a_cbs_sigma_change_uploads_one_kernel_for_all_layers():
    """ResNet-18 has 17 smoothed convs: a σ change copied the kernel to the device 17 times and read
    each layer's identity flag back from it. On the meta device any read of a value would raise; the host
    computes the kernel (reads there are no syncs), so only uploads are counted."""
    from curriculab.methods.cbs import CBS
    from curriculab.models import create_model

    method = CBS(CBS.Params.model_validate({"sigma": 1.0}), SimpleNamespace(data=SimpleNamespace(in_channels=3)))
    method.wrap_model(create_model("resnet18", 3, 10, 0.125)).to("meta")
    assert _syncs(lambda: method.set_sigma(0.5), uploads_only=True) == 1
    assert all(layer.sigma == 0.5 and not layer.identity for layer in method.layers)
    method.set_sigma(0.0)
    assert all(layer.identity for layer in method.layers)


def test_a_magnet_iteration_uploads_once_and_reads_once_with_the_same_loss():
    """The SPL-ADVisE pretraining and adaptive refreshes: one upload (positions, slots, classes) and one
    read (the per-sample losses the index needs) per iteration, where there were three uploads, a unique,
    a class check and a second read of the mean loss."""
    from curriculab.methods.magnet import ClusterIndex, magnet_loss, magnet_step

    g = torch.Generator().manual_seed(0)
    labels = np.repeat(np.arange(3), 20)
    index = ClusterIndex(labels, classes=3, k=2, m=3, b=4, rng=np.random.default_rng(0))
    index.refresh(np.random.default_rng(1).normal(size=(60, 2)).astype(np.float32))
    data = SimpleNamespace(device=torch.device("cpu"), train_x=torch.rand(60, 1, 8, 8, generator=g),
                           to_input=lambda x, augment: x)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with SyncCounter() as counter:
        losses = magnet_step(model, opt, index, data, alpha=1.0, variance="rippel")
    assert counter.uploads == 1 and sorted(counter.calls) == ["as_tensor", "cpu", "numpy"], counter.calls
    assert losses.shape == (12,) and index.has_loss.sum() > 0
    r = torch.randn(12, 2, generator=g)
    slot, cls = torch.arange(3).repeat_interleave(4), torch.tensor([2, 0, 1]).repeat_interleave(4)
    assert torch.equal(magnet_loss(r, slot, cls, 1.0, reduction="none"),
                       magnet_loss(r, slot, cls, 1.0, reduction="none", slots=3))


def test_batches_follow_the_models_memory_format(workdir):
    """channels_last converted the model but not the batches, so every conv converted its input again."""
    from curriculab.data.loader import DeviceData
    from curriculab.engine.loop import channels_last
    from tests.conftest import micro_run

    run = micro_run()
    assert channels_last(torch.device("cuda"), run.train) and not channels_last(torch.device("cpu"), run.train)
    assert not channels_last(torch.device("cuda"), run.train.model_copy(update={"channels_last": False}))
    data = DeviceData(run, workdir / "data", torch.device("cpu"))
    rgb = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)  # for 1 channel both layouts coincide
    assert not data.to_input(rgb, augment=True).is_contiguous(memory_format=torch.channels_last)
    data.memory_format = torch.channels_last
    assert data.to_input(rgb, augment=True).is_contiguous(memory_format=torch.channels_last)
    assert data.to_input(rgb, augment=False).is_contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- bf16

def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)  # CPU autocast runs conv / linear in bf16 as CUDA's does


def test_the_blur_runs_in_float32_under_bf16_autocast():
    """A bf16 Gaussian kernel sums to 0.9996-1.0024: the blur is computed in float32 whatever autocast says."""
    from curriculab.methods.cbs import GaussianSmoothing

    layer = GaussianSmoothing(3, 1.0)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    want = layer(x)
    with _bf16():
        got = layer(x)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    with _bf16():
        assert layer(x.bfloat16()).dtype == torch.bfloat16  # the caller's dtype comes back


def test_spl_selection_losses_are_float32_under_bf16_autocast(workdir):
    """bf16 logits tie many per-sample losses, and SPL-ADVisE ranks them: the ranking pass is float32."""
    from curriculab.data.loader import DeviceData
    from curriculab.methods.spl_advise import SPLAdvise
    from tests.conftest import micro_run

    run = micro_run()
    data = DeviceData(run, workdir / "data", torch.device("cpu"))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    method = SimpleNamespace(params=SimpleNamespace(loss_batch_size=128), ctx=SimpleNamespace(run=run))
    state = SimpleNamespace(model=model, data=data)
    want = SPLAdvise.sample_losses(method, state)
    with _bf16():
        got = SPLAdvise.sample_losses(method, state)
    assert torch.equal(got, want)


# --------------------------------------------------------------------------- determinism

def test_lenet_pools_with_the_adaptive_windows_and_no_adaptive_pool():
    """nn.AdaptiveAvgPool2d(5) has a non-deterministic CUDA backward, so the SPL-ADVisE embedding was not
    reproducible on a GPU. (Output size 1 is a mean in ATen, deterministic, and stays.)"""
    from curriculab.models import create_model
    from curriculab.models.convnets import AveragePoolTo

    for n in (2, 4, 5, 7, 10, 13):
        x = torch.randn(3, 4, n, n + 1, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
        assert torch.allclose(AveragePoolTo(5)(x), torch.nn.AdaptiveAvgPool2d(5)(x), atol=1e-12), n
    for size in (8, 28):
        net = create_model("lenet", 1, 10, 1.0)
        assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in net.modules())
        assert net(torch.randn(2, 1, size, size)).shape == (2, 10)


def test_the_suite_runs_with_strict_determinism():
    from curriculab.engine.devices import seed_everything

    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()


# --------------------------------------------------------------------------- torch.compile

def test_a_compiled_blur_keeps_one_graph_down_to_sigma_zero():
    """σ reaching 0 switched the blur to a Python identity branch: one more graph per smoothed layer. Under
    torch.compile it stays a convolution, whose delta kernel at σ = 0 returns the input exactly."""
    from curriculab.methods.cbs import GaussianSmoothing

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    layer = GaussianSmoothing(3, 1.0)
    compiled = torch.compile(layer, backend=counting)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(compiled(x), layer(x))
    for sigma in (0.5, 0.0):
        layer.set_sigma(sigma)
        out = compiled(x)
    assert torch.equal(out, x) and layer.identity
    assert len(graphs) == 1, len(graphs)


def test_compiled_runs_drop_the_last_partial_batch(workdir):
    """A partial last batch is one more graph per epoch under torch.compile: compiled runs drop it."""
    from curriculab.data.loader import DeviceData
    from curriculab.engine.loop import train_batch_iter
    from tests.conftest import micro_run

    for compile_ in (False, True):
        run = micro_run({"train": {"compile": compile_, "batch_size": 64}})
        data = DeviceData(run, workdir / "data", torch.device("cpu"))
        sizes = [len(b.y) for b in train_batch_iter(run, data)]
        assert (sizes[-1] < 64) == (not compile_) and sum(sizes) >= data.n_train - 63


def test_bf16_autocast_is_on_cuda_only_and_only_when_asked():
    """`train.bf16` autocasts CUDA runs; CPU runs and runs without it get no autocast (mutmut: untested)."""
    import contextlib
    import warnings

    from curriculab.engine.devices import autocast

    for device, bf16 in (("cpu", True), ("cpu", False), ("cuda", False)):
        assert isinstance(autocast(torch.device(device), bf16), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without a CUDA device, torch warns that the context is disabled
        ac = autocast(torch.device("cuda"), True)
    assert isinstance(ac, torch.autocast) and ac.device == "cuda" and ac.fast_dtype == torch.bfloat16
