"""``DermFuse``: segmenter + classifier + everything needed to use them, as one Hub-ready object.

Its ``__init__`` takes only flat JSON-serialisable arguments, so ``PyTorchModelHubMixin`` writes
them to ``config.json`` and the weights to ``model.safetensors``; ``from_pretrained`` takes a local
folder or a Hub repo id. Loading never unpickles: a folder or repo without ``model.safetensors`` is
refused, as is a config with keys this version does not know.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import nn

from .. import vocab
from ..constants import DARK_FRAMES, IMAGE_FRAMINGS, IMAGENET_MEAN, IMAGENET_STD, LESION_MODES
from .backbones import load_imagenet_weights
from .classifier import DualStreamClassifier
from .flips import check_flip_views
from .segmenter import ENCODER_KWARGS, LesionSegmenter, check_segmentation_size

WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MUTABLE_CONFIG = ("temperature", "prior_shift", "ood", "gate", "dataset", "name", "trained_metadata", "age_range")
MUTABLE_CONFIG += ("skin_tone", "operating_points")  # fitted after training: python -m train skin-tone / operating-points
# Measured after training (experiments.resolution, .focus, .bare_skin): under them an image is not assessable.
MUTABLE_CONFIG += ("min_image_side", "min_sharpness", "min_lesion_contrast")
MUTABLE_CONFIG += ("dark_frame",)  # chosen after training: experiments.dark_frame
LEAST_UNITS = {"min_sharpness": "log variance of the Laplacian", "min_lesion_contrast": "ΔE*ab"}


def _check_prior_shift(shift, classes: int) -> list[float] | None:
    if shift is None:
        return None
    shift = [float(v) for v in shift]
    if len(shift) != classes or not all(math.isfinite(v) for v in shift):
        raise ValueError(f"prior_shift must be {classes} finite numbers (one per class), got {shift}")
    return shift


def _check_min_image_side(side) -> int:
    if isinstance(side, bool) or not isinstance(side, int) or side < 0:
        raise ValueError(f"min_image_side must be a whole number of pixels, 0 or more, got {side!r}")
    return side


def _check_least(key: str, value) -> float:
    """A least value of an image measure (``LEAST_UNITS``) under which an image is not assessable: a number, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{key} must be a number, 0 or more ({LEAST_UNITS[key]}), got {value!r}")
    return float(value)


def _check_dark_frame(dark_frame) -> str:
    if dark_frame not in DARK_FRAMES:
        raise ValueError(f"unknown dark_frame {dark_frame!r}: expected one of {', '.join(DARK_FRAMES)}")
    return dark_frame


def _check_white_balance(reference) -> list[float]:
    values = [float(v) for v in reference]
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values) or abs(sum(values) - 1) > 1e-3:
        raise ValueError("white_balance must be a light chromaticity: three positive numbers (R, G, B) summing to 1, "
                         f"got {reference!r}")
    return values


def _check_age_range(ages) -> list[float] | None:
    if ages is None:
        return None
    values = [float(a) for a in ages]
    if len(values) != 2 or not 0 <= values[0] <= values[1] <= vocab.MAX_AGE:
        raise ValueError(f"age_range must be [youngest, oldest] in years, 0 to {vocab.MAX_AGE:g}, got {ages!r}")
    return values


def _check_trained_metadata(fields) -> list[str] | None:
    if fields is None:
        return None
    fields = list(fields)
    if not set(fields) <= set(vocab.METADATA_FIELDS):
        raise ValueError(f"trained_metadata must name fields of {', '.join(vocab.METADATA_FIELDS)}, got {fields}")
    return [f for f in vocab.METADATA_FIELDS if f in fields]


class UnsafeCheckpointError(ValueError):
    """A checkpoint that would need unpickling, or a config this version cannot trust."""


class DermFuse(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="dermfuse",
    tags=["dermatology", "skin-lesion", "image-classification", "image-segmentation", "grad-cam"],
    paper_url="https://arxiv.org/abs/2510.17773",
    license="apache-2.0",
):
    """The whole dermfuse model. See ``design.md`` for the architecture and ``presets.py`` for sizes."""

    def __init__(
        self,
        classes: list[str] = vocab.HAM10000_CLASSES,
        segmenter_encoder: str = "efficientnet_b3",
        segmenter_decoder_channels: list[int] = (256, 128, 64, 32),
        segmenter_aspp_channels: int = 256,
        segmenter_aspp_rates: list[int] = (2, 4, 6),
        segmentation_size: list[int] = (256, 256),
        classifier_encoder: str = "densenet201",
        classifier_encoder_kwargs: dict | None = None,
        image_size: list[int] = (224, 224),
        embed_dim: int = 512,
        num_heads: int = 8,
        fusion: str = "cross_attention",
        use_lesion_stream: bool = True,
        use_metadata: bool = True,
        metadata_layers: int = 2,
        metadata_dropout: float = 0.1,
        dropout: float = 0.2,
        lesion_mode: str = "crop_mask",
        lesion_margin: float = 0.15,
        image_framing: str = "whole",
        flip_views: int = 1,
        white_balance: list[float] | None = None,
        dark_frame: str = "kept",
        mean: list[float] = IMAGENET_MEAN,
        std: list[float] = IMAGENET_STD,
        sexes: list[str] = vocab.SEXES,
        sites: list[str] = vocab.SITES,
        temperature: float = 1.0,
        prior_shift: list[float] | None = None,
        dataset: str = "untrained",
        name: str = "dermfuse",
        ood: dict | None = None,
        gate: dict | None = None,
        trained_metadata: list[str] | None = None,
        age_range: list[float] | None = None,
        skin_tone: dict | None = None,
        operating_points: dict | None = None,
        min_image_side: int = 0,
        min_sharpness: float = 0.0,
        min_lesion_contrast: float = 0.0,
    ):
        super().__init__()
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be at least two distinct labels, got {list(classes)}")
        unknown_labels = [c for c in classes if c not in vocab.DIAGNOSIS_NAMES]
        if unknown_labels:
            raise ValueError(f"unknown class labels {unknown_labels}: expected labels from {sorted(vocab.DIAGNOSIS_NAMES)}")
        if list(sexes) != list(vocab.SEXES) or list(sites) != list(vocab.SITES):
            raise ValueError(
                f"this model's sex/site vocabularies {list(sexes)} / {list(sites)} differ from dermfuse's "
                f"{list(vocab.SEXES)} / {list(vocab.SITES)}: it was made by another version"
            )
        if lesion_mode not in LESION_MODES:
            raise ValueError(f"unknown lesion_mode {lesion_mode!r}: expected one of {', '.join(LESION_MODES)}")
        if image_framing not in IMAGE_FRAMINGS:
            raise ValueError(f"unknown image_framing {image_framing!r}: expected one of {', '.join(IMAGE_FRAMINGS)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        check_segmentation_size(*segmentation_size)
        if any(side % 32 or side < 32 for side in image_size):
            raise ValueError(f"image_size {list(image_size)} must be multiples of 32 (the encoder stride)")
        self.classes = list(classes)
        self.segmentation_size, self.image_size = tuple(segmentation_size), tuple(image_size)
        self.lesion_mode, self.lesion_margin = lesion_mode, float(lesion_margin)
        self.image_framing = image_framing  # how the image stream sees a frame (constants.IMAGE_FRAMINGS)
        self.flip_views = check_flip_views(flip_views)  # the score: mean logits over this many flips (flips.py)
        if self.flip_views == 8 and image_size[0] != image_size[1]:
            raise ValueError(f"flip_views=8 mirrors each image on its diagonal, which needs a square image_size, got "
                             f"{list(image_size)}: use a square size, or 4 views or fewer")
        # The light chromaticity every image is white-balanced to before the classifier's streams see it
        # (data/colour_constancy.py), or None: images as they are
        self.white_balance = None if white_balance is None else _check_white_balance(white_balance)
        # What the classifier's streams see of a dermatoscope's dark round frame (data/field_of_view.py)
        self.dark_frame = _check_dark_frame(dark_frame)
        self.mean, self.std = tuple(mean), tuple(std)
        self.temperature, self.dataset, self.name, self.ood = float(temperature), dataset, name, ood
        self.prior_shift = _check_prior_shift(prior_shift, len(classes))
        self.gate = gate  # the assessability gate's dermoscopy score (dermfuse/assess.py), fitted by experiments/gate.py
        self.trained_metadata = _check_trained_metadata(trained_metadata)
        # The youngest and oldest age among the classifier's training images: an age outside is given to it as the
        # nearer of the two, not extrapolated (DermFusePipeline.predict)
        self.age_range = _check_age_range(age_range)
        self.skin_tone = skin_tone  # the training split's skin-tone bands (dermfuse/skin_tone.py)
        self.operating_points = operating_points  # melanoma thresholds fitted on validation (dermfuse/operating_points.py)
        # The shorter side under which an image is too small to judge (assess.py; measured by experiments/resolution.py)
        self.min_image_side = _check_min_image_side(min_image_side)
        self.min_sharpness = _check_least("min_sharpness", min_sharpness)  # under it an image is out of focus (experiments/focus.py)
        # Under it no lesion stands out from the skin around the one the segmenter found (experiments/bare_skin.py)
        self.min_lesion_contrast = _check_least("min_lesion_contrast", min_lesion_contrast)
        self.source = {"id": None, "revision": None}  # set by from_pretrained
        self.segmenter = LesionSegmenter(
            segmenter_encoder, tuple(segmenter_decoder_channels), segmenter_aspp_channels, tuple(segmenter_aspp_rates)
        )
        self.classifier = DualStreamClassifier(
            num_classes=len(classes),
            num_sexes=len(vocab.SEXES),
            num_sites=len(vocab.SITES),
            unknown_sex=vocab.SEXES.index(vocab.UNKNOWN),
            unknown_site=vocab.SITES.index(vocab.UNKNOWN),
            encoder=classifier_encoder,
            encoder_kwargs=classifier_encoder_kwargs,
            image_size=tuple(image_size),
            embed_dim=embed_dim,
            num_heads=num_heads,
            fusion=fusion,
            use_lesion_stream=use_lesion_stream,
            use_metadata=use_metadata,
            metadata_layers=metadata_layers,
            metadata_dropout=metadata_dropout,
            dropout=dropout,
        )

    @property
    def config(self) -> dict:
        """The JSON-serialisable arguments this model was built with (what ``config.json`` holds)."""
        return dict(self._hub_mixin_config)

    def update_config(self, **changes) -> None:
        """Change what training learns after the architecture is fixed (``temperature``, ``prior_shift``, ``ood``,
        ``gate``, ``dataset``, ``name``, ``trained_metadata``, ``age_range``, …: ``MUTABLE_CONFIG``), on the model and in the
        config ``save_pretrained`` writes."""
        unknown = sorted(set(changes) - set(MUTABLE_CONFIG))
        if unknown:
            raise ValueError(f"cannot change {unknown} after construction: only {', '.join(MUTABLE_CONFIG)}")
        if "temperature" in changes:
            changes["temperature"] = float(changes["temperature"])
            if not changes["temperature"] > 0:
                raise ValueError(f"temperature must be positive, got {changes['temperature']}")
        if "prior_shift" in changes:
            changes["prior_shift"] = _check_prior_shift(changes["prior_shift"], len(self.classes))
        if "trained_metadata" in changes:
            changes["trained_metadata"] = _check_trained_metadata(changes["trained_metadata"])
        if "age_range" in changes:
            changes["age_range"] = _check_age_range(changes["age_range"])
        if "min_image_side" in changes:
            changes["min_image_side"] = _check_min_image_side(changes["min_image_side"])
        if "dark_frame" in changes:
            changes["dark_frame"] = _check_dark_frame(changes["dark_frame"])
        for key in LEAST_UNITS:
            if key in changes:
                changes[key] = _check_least(key, changes[key])
        for key, value in changes.items():
            setattr(self, key, value)
            self._hub_mixin_config[key] = value

    @property
    def metadata_fields(self) -> tuple[str, ...]:
        """The metadata fields (of age, sex, site) the classifier learned from, so the only ones it is given.

        A model without the metadata transformer uses none. One trained on images without metadata
        (e.g. PH2) has the transformer but only ever saw "unknown": a known value would move its scores
        by chance, not by anything learned. Training records the fields its images carried in
        ``trained_metadata``; a config from before that record (``None``) is taken to have used all three.
        """
        if not self.classifier.use_metadata:
            return ()
        return tuple(vocab.METADATA_FIELDS if self.trained_metadata is None else self.trained_metadata)

    def inference_networks(self) -> dict[str, nn.Module]:
        """The networks that run without gradients when diagnosing, by name: the segmenter and the stream encoders
        (the pipeline's fast path runs inference copies of these; the head stays as it is)."""
        return {"segmenter": self.segmenter, **self.classifier.encoders()}

    def calibrate(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (B, classes): ``(logits + prior_shift) / temperature``, both fitted on validation
        data after training (``metrics.fit_prior_shift``); their softmax is the probabilities dermfuse shows."""
        if self.prior_shift is not None:
            logits = logits + torch.tensor(self.prior_shift, dtype=logits.dtype, device=logits.device)
        return logits / self.temperature

    def load_imagenet_weights(self, segmenter: bool = True) -> None:
        """Initialise every encoder (the classifier's only, with ``segmenter=False``) from timm's ImageNet
        weights (needs network; fails loudly offline)."""
        if segmenter:
            load_imagenet_weights(self.segmenter.encoder, self.segmenter.encoder_name, **ENCODER_KWARGS)
        for encoder in self.classifier.encoders().values():
            load_imagenet_weights(encoder, self.classifier.encoder_name, **self.classifier.encoder_kwargs)

    def forward(self, image, lesion, age, sex, site) -> torch.Tensor:
        """Classifier logits (B, classes) for normalised image and lesion tensors plus metadata: of one view,
        uncalibrated. The pipeline's score of a model with ``flip_views`` > 1 is the mean of these over the flipped views
        (``models/flips.py``; ``train.classifier.classify`` with ``views``)."""
        return self.classifier(image, lesion, age, sex, site)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs):
        """Safetensors only, strict keys, and a config checked against this version's arguments."""
        folder = Path(model_id) if os.path.isdir(model_id) else None
        if folder is not None:
            config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
            if not weights_file.is_file():
                pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
                raise UnsafeCheckpointError(
                    f"{folder} has no {WEIGHTS_FILE}"
                    + (f"; found {pickles}, which would need unpickling (arbitrary code) and is refused" if pickles else "")
                    + ". Save the model with DermFuse.save_pretrained(), which writes safetensors."
                )
            if not config_file.is_file():
                raise UnsafeCheckpointError(f"{folder} has no {CONFIG_FILE}: save the model with DermFuse.save_pretrained()")
        else:
            download = dict(repo_id=model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                            local_files_only=local_files_only, token=token)
            config_file = Path(hf_hub_download(filename=CONFIG_FILE, **download))
            weights_file = Path(hf_hub_download(filename=WEIGHTS_FILE, **download))
        check_saved_config(json.loads(config_file.read_text(encoding="utf-8")), source=str(config_file))
        model = cls(**model_kwargs)
        model = cls._load_as_safetensor(model, str(weights_file), map_location, strict)
        model.source = {"id": model_id, "revision": revision or file_digest(weights_file)}
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "DermFuse":
        """Load from a local folder or a Hub repo id; offline or missing repos fail with a clear message."""
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

        source = str(pretrained_model_name_or_path)
        try:
            return super().from_pretrained(source, **kwargs)
        except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
            if os.path.isdir(source):
                raise
            raise OSError(
                f"could not load model {source!r}: it is not a local folder, and fetching it from the Hugging Face Hub "
                f"failed ({type(error).__name__}: {error}). Check the repo id and your network, or pass a local folder "
                "such as checkpoints/<name>."
            ) from error


def check_saved_config(config: dict, source: str) -> None:
    """Refuse a config with keys ``DermFuse`` does not take (a tampered or foreign file)."""
    if not isinstance(config, dict):
        raise UnsafeCheckpointError(f"{source} is not a JSON object")
    known = set(inspect.signature(DermFuse.__init__).parameters) - {"self"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise UnsafeCheckpointError(
            f"{source} has keys this dermfuse version does not know: {unknown}. "
            f"Valid keys: {sorted(known)}. The file was edited or comes from another program."
        )


def file_digest(path: Path) -> str:
    """Short content hash of a weights file: the revision of a model loaded from a folder."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()[:12]
