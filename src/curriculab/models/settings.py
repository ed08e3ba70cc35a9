"""What each architecture declares without torch: its name, the keyword arguments it takes beyond
in_channels / num_classes / width (`model.kwargs` in params), and where its implementation lives. Checking a
params file reads only these; building a model imports the implementation.

`register_model` (models/__init__.py) checks each implementation's signature against its entry here when its
module is imported, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from curriculab.registry import Registry

COMMON = ("in_channels", "num_classes", "width")  # what every model takes (create_model passes them)


@dataclass(frozen=True)
class ModelSettings:
    name: str  # `model.name` in params
    impl: str  # "package.module:function" of the registered builder
    kwargs: tuple[str, ...] = ()  # its other keyword arguments, in signature order

    @property
    def takes_image_size(self) -> bool:
        """Whether the model's shape depends on the input side (`image_size`, e.g. a VAE's decoder)."""
        return "image_size" in self.kwargs


MODEL_SETTINGS: Registry[ModelSettings] = Registry("model")  # filled below and by `register_model`


def declare_model(name: str, impl: str, kwargs: tuple[str, ...] = ()) -> ModelSettings:
    return MODEL_SETTINGS.register(name, ModelSettings(name, impl, tuple(kwargs)))


# module of curriculab.models → (name, keyword arguments) of the models it defines
BUILT_IN = {
    "convnets": [("small_cnn", ()), ("lenet", ()), ("vgg16", ("bn", "head"))],
    "resnets": [("resnet18", ()), ("wrn", ("depth", "widen", "dropout")), ("preact_resnet", ("depth",)),
                ("resnext", ("depth", "cardinality", "group_width")), ("resnext50", ("cardinality", "group_width")),
                ("wide_resnet50", ())],
    "toy": [("basic_conv", ())],
    "imagenet": [("torchvision_imagenet", ("arch",))],
    "vae": [("vae", ("latent", "image_size")), ("wae", ("latent", "image_size", "kernel", "decoder_layers"))],
}

for _module, _models in BUILT_IN.items():
    for _name, _kwargs in _models:
        declare_model(_name, f"curriculab.models.{_module}:{_name}", _kwargs)
