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
    assert set(CLASSIFIERS) | {"vae"} <= set(model_names())


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
