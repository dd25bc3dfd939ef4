"""The networks: plain `nn.Module`s taking [0, 1] RGB NCHW tensors, and the preset registry."""

from .bicubic import Bicubic
from .common import (
    DIV2K_RGB_MEAN,
    UPSAMPLERS,
    MeanShift,
    Upsampler,
    WeightNormConv2d,
    count_parameters,
    upsample_stages,
)
from .edsr import EDSR
from .registry import ARCHITECTURES, PRESETS, Preset, build_model, get_preset, list_presets, preset_spec
from .spec import ModelSpec
from .srcnn import SRCNN
from .srresnet import Discriminator, SRResNet
from .vdsr import VDSR
from .wdsr import WDSR

__all__ = [
    "ARCHITECTURES",
    "DIV2K_RGB_MEAN",
    "EDSR",
    "PRESETS",
    "SRCNN",
    "UPSAMPLERS",
    "VDSR",
    "WDSR",
    "Bicubic",
    "Discriminator",
    "MeanShift",
    "ModelSpec",
    "Preset",
    "SRResNet",
    "Upsampler",
    "WeightNormConv2d",
    "build_model",
    "count_parameters",
    "get_preset",
    "list_presets",
    "preset_spec",
    "upsample_stages",
]
