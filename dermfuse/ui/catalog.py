"""Which models the app offers, loaded once: the chosen source at start-up, the other shipped ones on first use.

The chosen source (``--model``, else ``$DERMFUSE_MODEL``, else ``checkpoints/dermfuse-small-ham10000``)
is loaded — and warmed up with one prediction — when the catalog opens, so a bad source stops the
app at start-up with a message that says how to fix it, and the first user does not pay for the
one-off kernel set-up (about 2 s on a CPU). Every other checkpoint in ``checkpoints/`` is offered in
the model menu and loaded the first time someone picks it; each pipeline is loaded at most once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..data.phantom import generate_phantom
from ..pipeline import DermFusePipeline
from ..render import DISCLAIMER
from ..sources import CHECKPOINTS, DEFAULT_MODEL, MODEL_ENV, default_model_source, shipped_models


class ModelSourceError(ValueError):
    """A model source that cannot be loaded; the message says what to do instead."""


class ModelCatalog:
    """Menu name → model source, with each pipeline loaded once and shared by every request.

    Pipelines are thread-safe (they serialise their own calls), so one instance serves all users.
    """

    def __init__(self, sources: dict[str, str], default: str):
        assert default in sources, "the default model must be one of the sources"
        self.sources, self.default = dict(sources), default
        self._pipelines: dict[str, DermFusePipeline] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, source: str | None = None) -> "ModelCatalog":
        """Offer every shipped checkpoint plus ``source`` (default: env / demo) and load ``source`` now."""
        source = source or default_model_source()
        shipped = shipped_models()
        resolved = str(Path(source).resolve()) if os.path.isdir(source) else None
        default = next((name for name, folder in shipped.items() if folder == resolved), None) or source
        catalog = cls({default: resolved or source, **{n: f for n, f in shipped.items() if n != default}}, default)
        catalog.pipeline(default)(generate_phantom("nv", seed=0, size=128).image)  # warm-up
        return catalog

    @property
    def names(self) -> list[str]:
        """Menu names, the default first."""
        return [self.default] + [name for name in self.sources if name != self.default]

    def pipeline(self, name: str) -> DermFusePipeline:
        """The loaded pipeline of model ``name`` (loading it on first use)."""
        if name not in self.sources:
            raise ValueError(f"unknown model {name!r}: choose one of {', '.join(self.names)}")
        loaded = self._pipelines.get(name)
        if loaded is not None:  # the usual case: no lock, so a model being loaded blocks no other request
            return loaded
        with self._lock:
            if name not in self._pipelines:
                self._pipelines[name] = load_pipeline(self.sources[name])
            return self._pipelines[name]

    def describe(self, name: str) -> str:
        """The banner of model ``name`` (Markdown): what is loaded, and what it may be used for."""
        info = self.pipeline(name).model_info()
        lines = [f"**Model:** `{info['name']}` · source `{name}` · revision `{info['revision']}` · "
                 f"trained on *{info['dataset']}*"]
        dataset = info["dataset"].lower()
        if "phantom" in dataset:
            lines.append("⚠️ **Demo weights trained on synthetic phantom images, not on patients: "
                         "their output is not a diagnosis.**")
        elif dataset.startswith("ham10000"):
            lines.append("🔬 **Research model trained on real dermoscopy images: HAM10000 (7 diagnoses; segmenter also "
                         "on ISIC 2018 Task 1).** Its test-split numbers, measured on held-out lesions from the same two "
                         "clinics, are in its model card; images from other clinics, devices or skin tones can do much worse "
                         "(on ISIC archive images from other clinics it told melanoma from nevus far less well: see the "
                         "card). "
                         "Its scores move by about 0.02 (up to 0.39) when the same image is saved again as JPEG, and "
                         "turned or mirrored the same image got another top class on 10–13 % of validation images, and "
                         "with a ruler or an ink marking added on 7–9 %: read small differences between two uploads as "
                         "noise. It gives no diagnosis.")
        elif dataset.startswith("ph2"):
            lines.append("🔬 **Research model trained on real dermoscopy images (PH2): melanoma vs. nevus only, "
                         "without patient metadata** (age, sex and site are not used). Its "
                         "cross-validated numbers are in its model card. It gives no diagnosis.")
        elif dataset == "untrained":
            lines.append("⚠️ **Untrained model (random weights): its output means nothing.**")
        lines.append(DISCLAIMER)
        return "\n\n".join(lines)


def load_pipeline(source: str) -> DermFusePipeline:
    """Load a pipeline from a folder or Hub repo id, turning every failure into a :class:`ModelSourceError`."""
    # A Hub repo id is "owner/name"; anything else with a path shape is meant as a local folder.
    looks_local = source.startswith(("/", ".", "~")) or source.count("/") > 1 or (os.sep != "/" and os.sep in source)
    if looks_local and not os.path.isdir(os.path.expanduser(source)):
        hint = ""
        if Path(source).resolve() == (CHECKPOINTS / DEFAULT_MODEL).resolve():
            hint = (f" The default checkpoint is not in this copy yet: train it (`python -m train ham10000`) or point "
                    f"${MODEL_ENV} / --model at another model folder or Hub repo id.")
        raise ModelSourceError(f"model folder {source} does not exist.{hint}")
    try:
        return DermFusePipeline.from_pretrained(os.path.expanduser(source))
    except (OSError, ValueError) as error:  # missing files, unsafe/foreign checkpoint, bad repo id, offline
        reason = str(error).rstrip(".")  # most reasons are whole sentences: one full stop, not two
        raise ModelSourceError(
            f"cannot load model {source!r}: {reason}. Give --model (or ${MODEL_ENV}) a dermfuse model folder "
            "(config.json + model.safetensors) or a Hugging Face Hub repo id."
        ) from error
