"""The architecture registry: every model builds at any width, on small and CIFAR-sized inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from curriculab.config import ConfigError
from curriculab.models import MODELS, check_model, create_model, model_names, register_model, takes_image_size
from curriculab.models.settings import BUILT_IN, MODEL_SETTINGS
from curriculab.registry import load_object

CLASSIFIERS = {"small_cnn": {}, "lenet": {}, "vgg16": {}, "resnet18": {}, "wrn": {"depth": 10, "widen": 2},
               "preact_resnet": {"depth": 8}, "resnext": {"depth": 11}, "resnext50": {}, "wide_resnet50": {}}


def test_registry_lists_the_issue_architectures():
    assert set(CLASSIFIERS) | {"vae", "wae"} <= set(model_names())


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_forward_shapes_and_width(name):
    kw = CLASSIFIERS[name]
    for size, ch in ((8, 1), (32, 3)):
        m = create_model(name, ch, 7, width=0.125, **kw).eval()
        assert m(torch.randn(2, ch, size, size)).shape == (2, 7)
    small = sum(p.numel() for p in create_model(name, 3, 10, width=0.25, **kw).parameters())
    big = sum(p.numel() for p in create_model(name, 3, 10, width=0.5, **kw).parameters())
    assert big > 2 * small  # the width multiplier scales channel counts


def test_convs_are_named_modules_including_nested():
    m = create_model("resnet18", 3, 10, width=0.125)
    convs = [n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 1 + 16 + 3  # stem, two per basic block, three 1×1 shortcuts
    assert sum(n.endswith("shortcut.0") for n in convs) == 3
    vgg = create_model("vgg16", 3, 10, width=0.125, bn=False)
    names = [n for n, mod in vgg.named_modules() if isinstance(mod, nn.Conv2d)]
    assert len(names) == 13 and "blocks.0.conv2.conv" in names
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in vgg.modules())


def test_known_depths():
    def convs(m):
        return sum(isinstance(x, nn.Conv2d) for x in m.modules())

    # stem, 12 blocks × 2, three 1×1 projections
    assert convs(create_model("wrn", 3, 10, width=0.1, depth=28, widen=10)) == 1 + 24 + 3
    # stem, 27 blocks × 2, two projections
    assert convs(create_model("preact_resnet", 3, 10, width=0.1, depth=56)) == 1 + 54 + 2
    with pytest.raises(ValueError, match="6n\\+4"):
        create_model("wrn", 3, 10, depth=27)


def test_vae_shapes():
    v = create_model("vae", 1, 10, width=0.25, latent=50, image_size=28)
    logits, mu, logvar = v(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 50)
    assert any(isinstance(m, nn.ConvTranspose2d) for m in v.modules())


@pytest.mark.parametrize("size, channels, kw, encoded, start", [
    (28, 1, {}, (1024, 2, 2), 7),  # [58]'s MNIST network: SAME padding, 28 → 14 → 7 → 4 → 2
    (64, 3, {"kernel": 5, "decoder_layers": 4}, (1024, 4, 4), 8),  # CelebA 64 px
])
def test_wae_is_the_wasserstein_autoencoder_network(size, channels, kw, encoded, start):
    """`wae`: [58]'s encoder (four stride-2 convs, 128-1024 channels, TF 'SAME' sizes) and decoder (linear to
    (1024, start, start), transposed convs halving the channels, a last stride-1 layer), each conv + BN + ReLU."""
    v = create_model("wae", channels, 10, width=1.0, latent=50, image_size=size, **kw).eval()
    x = torch.rand(2, channels, size, size)
    assert v.encoder(x).shape == (2, *encoded)
    convs = [m for m in v.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [128, 256, 512, 1024]
    assert {m.kernel_size for m in convs} == {(kw.get("kernel", 4),) * 2} and {m.stride for m in convs} == {(2, 2)}
    assert sum(isinstance(m, nn.BatchNorm2d) for m in v.encoder.modules()) == 4
    assert v.mu.in_features == encoded[0] * encoded[1] * encoded[2] and v.mu.out_features == 50
    assert v.project.out_features == 1024 * start * start
    ups = [m for m in v.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in ups] == [1024 // 2 ** i for i in range(1, kw.get("decoder_layers", 3))]
    logits, mu, logvar = v(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (2, 50)
    with pytest.raises(ValueError, match="divisible by 4"):
        create_model("wae", 1, 10, image_size=30)


def test_same_padding_matches_tensorflow():
    """TF 'SAME': output ⌈n / s⌉ and the odd padding pixel after: for 7 → 4 with a 4×4 stride-2 kernel, pad 1
    before and 2 after, so the last output sees input rows 5, 6 and two zeros."""
    from curriculab.models.vae import SameConv2d

    conv = SameConv2d(1, 1, 4, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(49.0).view(1, 1, 7, 7)
    out = conv(x)
    assert out.shape == (1, 1, 4, 4)
    assert out[0, 0, 0, 0] == x[0, 0, :3, :3].sum()  # rows/cols -1..2: one zero row and column before
    assert out[0, 0, 3, 3] == x[0, 0, 5:, 5:].sum()  # rows/cols 5..8: two zero rows and columns after


def test_bad_model_arguments():
    with pytest.raises(ConfigError, match="unknown model 'resnet19'.*resnet18"):
        check_model("resnet19", {})
    with pytest.raises(ConfigError, match="model.kwargs.widn: .*did you mean 'widen'"):
        check_model("wrn", {"widn": 2})


def test_every_declared_model_is_the_builder_its_declaration_names():
    """models/settings.py (what validation reads, without importing the builders) lists every built-in model."""
    assert {name for models in BUILT_IN.values() for name, _ in models} == set(MODELS.names())
    for name in model_names():
        assert load_object(MODEL_SETTINGS.get(name).impl) is MODELS.get(name), name
    assert takes_image_size("vae") and not takes_image_size("resnet18")


def test_a_builder_unlike_its_declaration_is_refused_and_an_undeclared_one_declared():
    def wrn(in_channels: int, num_classes: int, width: float = 1.0, depth: int = 28) -> nn.Module:
        raise AssertionError("never built")

    with pytest.raises(TypeError, match="model 'wrn': .* models/settings.py declares curriculab.models.resnets:wrn"):
        register_model(wrn)

    def throwaway_net(in_channels: int, num_classes: int, width: float = 1.0, depth: int = 2,
                      image_size: int = 8) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    try:
        register_model(throwaway_net)
        assert "throwaway_net" in model_names() and takes_image_size("throwaway_net")
        check_model("throwaway_net", {"depth": 3})
        with pytest.raises(ConfigError, match="model.kwargs.dpth: .*did you mean 'depth'"):
            check_model("throwaway_net", {"dpth": 3})
        assert create_model("throwaway_net", 1, 3, image_size=8)(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    finally:
        MODELS.remove("throwaway_net")
        MODEL_SETTINGS.remove("throwaway_net")


def test_torchvision_imagenet_architectures_are_torchvisions():
    """CBS Tables 2-3 at 224 px: torchvision's networks, untrained; VGG-16 as in [51] (no BN, three FC layers)."""
    import torchvision.models as tvm

    for arch, params in (("resnet18", 11_181_642), ("vgg16", 134_301_514)):  # 10 classes
        net = create_model("torchvision_imagenet", 3, 10, arch=arch)
        assert type(net) is type(tvm.get_model(arch, weights=None))
        assert sum(p.numel() for p in net.parameters()) == params
    vgg = create_model("torchvision_imagenet", 3, 10, arch="vgg16")
    assert sum(isinstance(m, nn.Linear) for m in vgg.modules()) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in vgg.modules())
    assert create_model("torchvision_imagenet", 3, 5).eval()(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(ConfigError, match="'resnet19' is not a torchvision classification model"):
        create_model("torchvision_imagenet", 3, 10, arch="resnet19")
    with pytest.raises(ConfigError, match="takes RGB images at width 1.0"):
        create_model("torchvision_imagenet", 1, 10)


def test_vgg16_head_fc3_is_simonyan_and_zissermans_classifier():
    """CBS Table 1's VGG-16 [51]: no BN and three FC layers (512 → 4096 → 4096 → classes, dropout 0.5)."""
    net = create_model("vgg16", 3, 10, bn=False, head="fc3")
    linears = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]
    assert linears == [(512, 4096), (4096, 4096), (4096, 10)]
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in net.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) == 33_638_218
    assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="'fc2' is not a VGG head"):
        create_model("vgg16", 3, 10, head="fc2")
