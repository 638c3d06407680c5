"""Grad-CAM for both streams from one small backward pass through the classifier head.

Grad-CAM needs gradients only at its target layer. Our target layers are the encoders' outputs
(timm DenseNet's ``features.norm5``), so there is no need to back-propagate through the
DenseNets: the pipeline runs the encoders once without gradients, then the head (fusion +
metadata transformer + linear) on detached, grad-enabled copies of their maps. pytorch-grad-cam
does the CAM arithmetic on a wrapper that makes the head look like a one-input model; the
classifier's identity taps at the head's entry are its target layers, one per stream, and one
backward fills both.

A map can be degenerate: Grad-CAM keeps only the positive part of its channel-weighted sum, and on
a 5×5 encoder map that sum can be negative everywhere (all zero: 66 of 140 PH2 images for the
phantom model's image stream), the same everywhere, or not finite. Such a map has no mass to share
out and points nowhere, so :func:`explain_streams` replaces it by ``FALLBACK_METHOD``'s map for the
same class and records which method made every map and why. The fallback was chosen once, by lesion
focus against expert masks on validation images (``experiments/lesion_focus.py``); a method is never
chosen per image by how well its map fits the lesion: that would make the explanation flatter the model.

``standard_gradcam`` is the way a typical project does it (a full ``GradCAM`` call per stream,
back-propagating through the whole network): the benchmark's reference, and a check that both
ways give the same maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from .models.flips import repeated, unflipped, view_mean

PRIMARY_METHOD = "Grad-CAM"
# Chosen by ``experiments/lesion_focus.py`` on 500 HAM10000 validation images (mean lesion focus against the
# expert masks over both streams, Grad-CAM++ 0.60, LayerCAM 0.56; XGrad-CAM is itself degenerate too often):
# docs/results/lesion_focus.json.
FALLBACK_METHOD = "Grad-CAM++"
FLAT = 1e-6  # a map whose range is below this share of its peak is the same everywhere (float32 noise)


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


class PerStream:
    """Three small overrides of a pytorch-grad-cam method (mixed in before it): the output size is the
    classifier's input size (not the head input's 7×7), each layer's (stream's) map is returned
    instead of their average, and each layer's raw map is kept so a degenerate one can be told apart
    from a real one (after the library's rescaling both are arrays in [0, 1])."""

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], output_size: tuple[int, int]):
        super().__init__(model, target_layers)
        self.output_size = output_size
        self.raw_maps: list[np.ndarray] = []  # per target layer: (B, h, w), before ReLU and rescaling

    def get_target_width_height(self, input_tensor: torch.Tensor) -> tuple[int, int]:
        height, width = self.output_size
        return width, height

    def get_cam_image(self, *args, **kwargs) -> np.ndarray:
        cam = super().get_cam_image(*args, **kwargs)  # (B, h, w)
        self.raw_maps.append(cam)
        return cam

    def aggregate_multi_layers(self, cam_per_target_layer: list[np.ndarray]) -> np.ndarray:
        # The library's final rescale, per stream instead of over the stream average.
        scaled = [scale_cam_image(np.maximum(cam[:, 0], 0))[:, None] for cam in cam_per_target_layer]
        return np.nan_to_num(np.concatenate(scaled, axis=1), nan=0.0)  # (B, streams, H, W), each in [0, 1]


class StreamGradCAM(PerStream, GradCAM):
    """Grad-CAM: channels weighted by their mean gradient."""


class StreamGradCAMPlusPlus(PerStream, GradCAMPlusPlus):
    """Grad-CAM++: channels weighted by their positive gradients only."""


class StreamLayerCAM(PerStream, LayerCAM):
    """LayerCAM: each location weighted by its own positive gradients."""


class StreamXGradCAM(PerStream, XGradCAM):
    """XGrad-CAM: channels weighted by gradients times normalised activations."""


CAM_METHODS = {"Grad-CAM": StreamGradCAM, "Grad-CAM++": StreamGradCAMPlusPlus, "LayerCAM": StreamLayerCAM,
               "XGrad-CAM": StreamXGradCAM}
METHOD_IN_WORDS = {
    "Grad-CAM++": "which counts only the features that raise the score",
    "LayerCAM": "which weighs each spot by the features that raise the score there",
    "XGrad-CAM": "which weighs features by how strongly they respond",
}


def map_flaw(cam: np.ndarray) -> str | None:
    """Why a raw CAM (h, w; before ReLU) cannot be shown, in plain words; ``None`` if it can.

    After ReLU a map that is zero, or the same, everywhere would be rescaled to all zeros: no mass to
    measure (a NaN lesion focus) and nothing to see, so it must not be passed off as a heatmap.
    """
    if not np.isfinite(cam).all():
        return "not a finite number in places (a numerical failure)"
    positive = np.maximum(cam, 0)
    peak = float(positive.max())
    if peak <= 0:
        return "all zero (no region raised the score)"
    if float(np.ptp(positive)) <= FLAT * peak:
        return "the same everywhere (no region stood out)"
    return None


def head_cams(classifier, image_maps, lesion_maps, metadata, output_size, targets: list[int] | None = None,
              method: str = PRIMARY_METHOD, views: int = 1):
    """One CAM method on each stream at ``output_size``, from one forward and one backward through the head.

    ``image_maps`` / ``lesion_maps``: (V·B, C, h, w) encoder outputs of ``views`` flipped views of each case,
    view-major (``models/flips.py``; V = 1: the cases as they are; no graph needed); ``metadata``: (B,) each;
    ``targets``: one class per case, or ``None`` for each case's top class. Returns ``(cams, flaws, logits)``:
    cams is ``{"image": (B, H, W), "lesion": (B, H, W)}`` in [0, 1] (``lesion`` only with a lesion
    stream; all zero where flawed), flaws ``{stream: [reason or None per case]}`` (:func:`map_flaw`),
    logits (B, classes) come from the same forward pass (the mean over the views). With views, each case's map
    is that of its mean score: every view's raw map, put back in the image's frame, averaged, then made a heatmap
    as the library makes one. Only the maps get gradients: the caller's model should have
    ``requires_grad_(False)`` so no parameter gradient is computed.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}: expected one of {', '.join(CAM_METHODS)}")
    streams = list(classifier.taps())
    maps = [image_maps] + ([lesion_maps] if classifier.use_lesion_stream else [])
    stacked = torch.cat([m.detach().float() for m in maps], dim=1)  # (V·B, C·streams, h, w)
    head = HeadAsModel(classifier, tuple(repeated(m, views) for m in metadata), image_maps.shape[1])
    if targets is None and views > 1:  # the top class of the mean score, the target in every view
        with torch.no_grad():
            targets = view_mean(head(stacked), views).argmax(1).tolist()
    with torch.enable_grad():
        cam = CAM_METHODS[method](head, [classifier.taps()[s] for s in streams], output_size)
        try:
            chosen = None if targets is None else [ClassifierOutputTarget(t) for t in list(targets) * views]
            per_stream = cam(input_tensor=stacked.requires_grad_(True), targets=chosen)
            logits = view_mean(cam.outputs.detach(), views)
        finally:
            cam.activations_and_grads.release()
    cams, flaws = {}, {}
    for i, stream in enumerate(streams):
        raw_maps = cam.raw_maps[i]  # (V·B, h, w)
        if views > 1:
            raw_maps = unflipped(raw_maps, views).mean(0)  # (B, h, w), in the image's frame
            width, height = cam.get_target_width_height(stacked)
            # ReLU, rescale to [0, 1] and resize, then rescale again: the library's steps for one view's map.
            per_case = scale_cam_image(scale_cam_image(np.maximum(raw_maps, 0), (width, height)))
        else:
            per_case = per_stream[:, i]
        flaws[stream] = [map_flaw(raw) for raw in raw_maps]
        cams[stream] = np.nan_to_num(per_case, nan=0.0).astype(np.float32)
        cams[stream][[flaw is not None for flaw in flaws[stream]]] = 0
    return cams, flaws, logits


@dataclass
class StreamExplanations:
    """Each stream's maps for a batch, and for every case which method made its map and why not the usual one.

    ``maps``: stream → (B, H, W) in [0, 1]; ``methods``: stream → per case the method's name, or
    ``None`` where no method gave a usable map (its map is all zero then: do not show it);
    ``notes``: stream → per case a plain sentence where the map is not ``PRIMARY_METHOD``'s, else ``None``.
    """

    maps: dict[str, np.ndarray]
    methods: dict[str, list[str | None]]
    notes: dict[str, list[str | None]]
    logits: torch.Tensor


def explain_streams(classifier, image_maps, lesion_maps, metadata, output_size,
                    targets: list[int] | None = None, views: int = 1) -> StreamExplanations:
    """Grad-CAM of both streams (:func:`head_cams`); where a case's map is degenerate, ``FALLBACK_METHOD``'s
    for the same class, run on those cases only. Arguments as :func:`head_cams`."""
    cams, flaws, logits = head_cams(classifier, image_maps, lesion_maps, metadata, output_size, targets, views=views)
    targets = logits.argmax(1).tolist() if targets is None else list(targets)
    methods = {s: [PRIMARY_METHOD if flaw is None else None for flaw in flaws[s]] for s in cams}
    notes = {s: [None] * len(targets) for s in cams}
    redo = [i for i in range(len(targets)) if any(flaws[s][i] for s in cams)]
    if redo:
        cases = len(targets)
        rows = torch.tensor(redo, device=image_maps.device)
        view_rows = torch.tensor([view * cases + i for view in range(views) for i in redo], device=image_maps.device)
        again, again_flaws, _ = head_cams(
            classifier, image_maps[view_rows], None if lesion_maps is None else lesion_maps[view_rows],
            tuple(m[rows] for m in metadata), output_size, [targets[i] for i in redo], FALLBACK_METHOD, views)
        for j, i in enumerate(redo):
            for s in cams:
                if flaws[s][i] is None:
                    continue
                if again_flaws[s][j] is None:
                    cams[s][i], methods[s][i] = again[s][j], FALLBACK_METHOD
                    notes[s][i] = (f"The {PRIMARY_METHOD} map was {flaws[s][i]}, so the {FALLBACK_METHOD} map "
                                   f"is shown, {METHOD_IN_WORDS[FALLBACK_METHOD]}.")
                else:
                    notes[s][i] = (f"No map can be shown: the {PRIMARY_METHOD} map was {flaws[s][i]}, and the "
                                   f"{FALLBACK_METHOD} map was {again_flaws[s][j]}.")
    return StreamExplanations(cams, methods, notes, logits)


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
