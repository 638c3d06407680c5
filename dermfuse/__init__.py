"""dermfuse: explainable skin-lesion diagnosis (segmentation, dual-stream classification, Grad-CAM)."""

from .models import DermFuse, create_model

__version__ = "0.1.0"
__all__ = ["DermFuse", "create_model", "__version__"]
