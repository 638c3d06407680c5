"""The phantom benchmark: procedural dermoscopy-like images with known truth (design.md).

No dermoscopy images can be downloaded where dermfuse is developed, so this package draws them:
seven HAM10000 classes painted from textbook dermoscopic criteria (``lesions.py``) on varied skin
with the nuisances of real dermoscopy (``skin.py``), a pixel-exact lesion mask, metadata sampled from
HAM10000's real per-class statistics (``metadata.py``), a ``difficulty`` knob that makes classes
overlap, and an optional planted shortcut (violet marker ink correlated with one class).

    >>> from dermfuse.data.phantom import generate_phantom, Shortcut
    >>> p = generate_phantom("mel", seed=0, shortcut=Shortcut("mel", 0.9))
    >>> p.image.shape, p.mask.dtype, p.site
    ((256, 256, 3), dtype('bool'), ...)

Command line: ``python -m dermfuse.data.phantom --out DIR --n 700 --seed 0``.
"""

from dermfuse.data.phantom.dataset import PHANTOM_VERSION, class_counts, contact_sheet, generate_dataset, image_seed
from dermfuse.data.phantom.generator import SHORTCUT_MODES, Phantom, Shortcut, generate_phantom
from dermfuse.data.phantom.metadata import derive_metadata_stats, sample_metadata

__all__ = [
    "PHANTOM_VERSION",
    "SHORTCUT_MODES",
    "Phantom",
    "Shortcut",
    "class_counts",
    "contact_sheet",
    "derive_metadata_stats",
    "generate_dataset",
    "generate_phantom",
    "image_seed",
    "sample_metadata",
]
