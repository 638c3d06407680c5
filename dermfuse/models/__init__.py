"""The networks: lesion segmenter, dual-stream classifier, and the ``DermFuse`` model object."""

from .classifier import DualStreamClassifier
from .dermfuse import DermFuse, UnsafeCheckpointError
from .layers import ASPP, DualAttentionGate
from .presets import PRESETS, create_model
from .segmenter import LesionSegmenter, check_segmentation_size

__all__ = [
    "ASPP", "DermFuse", "DualAttentionGate", "DualStreamClassifier", "LesionSegmenter", "PRESETS",
    "UnsafeCheckpointError", "check_segmentation_size", "create_model",
]
