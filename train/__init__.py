"""Training for dermfuse: ``python -m train segmenter|classifier|push|demo --key=value ...``.

Stage 1 (``train.segmenter``) fits the lesion segmenter; stage 2 (``train.classifier``) fits the
dual-stream classifier on lesion images made by the stage-1 model and calibrates it; ``train.push``
publishes a run's model with its card; ``train.demo`` builds the phantom demo checkpoint. The shared
machinery lives in ``config.py`` (settings), ``engine.py`` (device, DDP, the epoch loop),
``checkpoint.py`` (crash-safe files) and ``data.py`` (dataset, phantoms, splits).
"""
