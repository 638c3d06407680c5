"""What a model stores after training, each value measured by its own study, in the order they depend on each other.

``python -m train ham10000`` ends here, so one command reproduces every value the shipped model's ``config.json``
holds; each study is also a command of its own (named below) that measures or refits one value of a saved model:

1. the assessability gate, fitted (``python -m train gate``): the bare-skin study (6) counts what the app diagnoses;
2. the skin-tone bands of its training images (``python -m train skin-tone``);
3. the melanoma operating points on its validation split (``python -m train operating-points``);
4. the least image side (``python -m experiments.resolution``);
5. the least sharpness (``python -m experiments.focus``), measured with the least side in place;
6. the least lesion contrast (``python -m experiments.bare_skin``), with the least side and sharpness in place;
7. whether the classifier sees a dermatoscope's dark frame filled in (``python -m experiments.dark_frame``): it changes
   only framed images, which the training and validation splits of HAM10000 (almost) never hold, so the values above
   do not depend on it;
8. the gate measured again per source (``python -m train gate --fit=false``), now with every rule the app applies.

Each study rewrites the model card. They read the shared data layout (``HAM10000/``, ``ISIC2018_Task1/``,
``real/``, ``isic_cc0/`` in one folder).
"""

from __future__ import annotations

from pathlib import Path

from experiments.bare_skin import BareSkinConfig, run_bare_skin
from experiments.dark_frame import DarkFrameConfig, run_dark_frame
from experiments.focus import FocusConfig, run_focus
from experiments.gate import GateConfig, run_gate
from experiments.operating_points import OperatingPointsConfig, run_operating_points
from experiments.resolution import ResolutionConfig, run_resolution
from experiments.skin_tone import SkinToneConfig, run_skin_tone

STUDIES = (  # (name of its results file, settings, run), in the order above
    ("gate", GateConfig, run_gate),
    ("skin_tone", SkinToneConfig, run_skin_tone),
    ("operating_points", OperatingPointsConfig, run_operating_points),
    ("resolution", ResolutionConfig, run_resolution),
    ("focus", FocusConfig, run_focus),
    ("bare_skin", BareSkinConfig, run_bare_skin),
    ("dark_frame", DarkFrameConfig, run_dark_frame),
)


def measure_after_training(model: str | Path, data: str | Path, results: str | Path) -> None:
    """Run each study on the saved ``model`` folder with the shared ``data`` folder, writing its numbers as
    ``<results>/<name>.json``, then measure the gate again with every rule in place."""
    where = lambda name: str(Path(results) / f"{name}.json")  # noqa: E731
    for name, settings, run in STUDIES:
        run(settings(model=str(model), data=str(data), out=where(name)))
    run_gate(GateConfig(model=str(model), data=str(data), fit=False, out=where("gate")))
