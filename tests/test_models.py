"""The architecture registry: every model builds at any width, on small and CIFAR-sized inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from curriculab.config import ConfigError
from curriculab.models import check_model, create_model, model_names

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
