"""Grad-CAM for both streams from one small backward pass through the classifier head.

Grad-CAM needs gradients only at its target layer. Our target layers are the encoders' outputs
(timm DenseNet's ``features.norm5``), so there is no need to back-propagate through the
DenseNets: the pipeline runs the encoders once without gradients, then the head (fusion +
metadata transformer + linear) on detached, grad-enabled copies of their maps. pytorch-grad-cam
does the CAM arithmetic on a wrapper that makes the head look like a one-input model; the
classifier's identity taps at the head's entry are its target layers, one per stream, and one
backward fills both.

``standard_gradcam`` is the way a typical project does it (a full ``GradCAM`` call per stream,
back-propagating through the whole network): the benchmark's reference, and a check that both
ways give the same maps.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn


class HeadAsModel(nn.Module):
    """The classifier head as a one-input model: input = encoder maps stacked along channels.

    The classifier is held as a plain attribute, not a submodule: pytorch-grad-cam calls
    ``model.eval()`` and ``model.zero_grad()`` on every call, and walking the encoders' thousands of
    modules took 28 of a call's 34 ms (paper preset, profiled). The classifier is already in eval
    mode with its parameters frozen, so both calls have nothing to do there.
    """

    def __init__(self, classifier, metadata: tuple[torch.Tensor, torch.Tensor, torch.Tensor], image_channels: int):
        super().__init__()
        self.metadata, self.image_channels = metadata, image_channels
        self.__dict__["classifier"] = classifier  # not registered: see the class docstring
        # pytorch-grad-cam reads the model's device from its first parameter: a zero-size one on the head's device.
        device = next(classifier.parameters()).device
        self.device_anchor = nn.Parameter(torch.empty(0, device=device), requires_grad=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        image_maps = maps[:, : self.image_channels]  # (B, C, h, w)
        lesion_maps = maps[:, self.image_channels:] if self.classifier.use_lesion_stream else None
        return self.classifier.forward_head(image_maps, lesion_maps, *self.metadata)


class StreamGradCAM(GradCAM):
    """GradCAM that keeps one map per target layer (stream) and sizes them to the classifier input.

    Two small overrides of pytorch-grad-cam's ``BaseCAM``: the output size is the classifier's
    input size (not the head input's 7×7), and the per-layer maps are returned instead of averaged.
    """

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], output_size: tuple[int, int]):
        super().__init__(model, target_layers)
        self.output_size = output_size

    def get_target_width_height(self, input_tensor: torch.Tensor) -> tuple[int, int]:
        height, width = self.output_size
        return width, height

    def aggregate_multi_layers(self, cam_per_target_layer: list[np.ndarray]) -> np.ndarray:
        # The library's final rescale, per stream instead of over the stream average.
        scaled = [scale_cam_image(np.maximum(cam[:, 0], 0))[:, None] for cam in cam_per_target_layer]
        return np.concatenate(scaled, axis=1)  # (B, streams, H, W), each in [0, 1]


def head_gradcam(classifier, image_maps, lesion_maps, metadata, output_size, targets: list[int] | None = None):
    """Grad-CAM of each stream at ``output_size``, from one forward and one backward through the head.

    ``image_maps`` / ``lesion_maps``: (B, C, h, w) encoder outputs (no graph needed); ``targets``:
    one class per case, or ``None`` for each case's top class. Returns ``(cams, logits)``: cams is
    ``{"image": (B, H, W), "lesion": (B, H, W)}`` in [0, 1] (``lesion`` only with a lesion stream),
    logits (B, classes) come from the same forward pass. Only the maps get gradients: the caller's
    model should have ``requires_grad_(False)`` so no parameter gradient is computed.
    """
    streams = list(classifier.taps())
    maps = [image_maps] + ([lesion_maps] if classifier.use_lesion_stream else [])
    stacked = torch.cat([m.detach().float() for m in maps], dim=1)  # (B, C·streams, h, w)
    head = HeadAsModel(classifier, metadata, image_maps.shape[1])
    with torch.enable_grad():
        cam = StreamGradCAM(head, [classifier.taps()[s] for s in streams], output_size)
        try:
            chosen = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
            per_stream = cam(input_tensor=stacked.requires_grad_(True), targets=chosen)
            logits = cam.outputs.detach()
        finally:
            cam.activations_and_grads.release()
    return {stream: per_stream[:, i].astype(np.float32) for i, stream in enumerate(streams)}, logits


def standard_gradcam(classifier, image, lesion, metadata, target_class: int) -> dict[str, np.ndarray]:
    """Reference: one standard pytorch-grad-cam ``GradCAM`` call per stream, full backward each time."""

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = classifier

        def forward(self, x):
            return classifier(x, lesion, *metadata) if stream == "image" else classifier(image, x, *metadata)

    out = {}
    flags = [p.requires_grad for p in classifier.parameters()]
    classifier.requires_grad_(True)  # as in a typical project: every parameter gets its gradient too
    try:
        for stream, encoder in classifier.encoders().items():
            with GradCAM(model=Wrapped(), target_layers=[forward_features_output(encoder)]) as cam:
                inputs = image if stream == "image" else lesion
                out[stream] = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(target_class)])[0].astype(np.float32)
    finally:
        for parameter, flag in zip(classifier.parameters(), flags):
            parameter.requires_grad_(flag)
    return out


def forward_features_output(encoder: nn.Module) -> nn.Module:
    """The layer whose output a timm encoder's ``forward_features`` returns: DenseNet's ``features.norm5``,
    EfficientNet's ``bn2`` (after ``conv_head``); the standard Grad-CAM target."""
    if hasattr(encoder, "bn2") and hasattr(encoder, "conv_head"):
        return encoder.bn2
    return encoder.features.norm5


def lesion_focus(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's mass inside the lesion mask, in [0, 1] (NaN if the map is all zero)."""
    total = float(cam.sum())
    return float(cam[mask].sum() / total) if total > 0 else float("nan")
