"""Fitting dermfuse: ``python -m train segmenter|classifier --key=value ...``.

Stage 1 (``train.segmenter``) fits the lesion segmenter; stage 2 (``train.classifier``) fits the
dual-stream classifier on lesion images made by the stage-1 model and calibrates it. The shared
machinery lives in ``config.py`` (settings), ``runtime.py`` (device, precision, DDP), ``order.py``
(each epoch's samples and seeds), ``run_folder.py``, ``loop.py`` (optimiser, schedule, the epoch loop),
``checkpoint.py`` (crash-safe files) and ``data.py`` (dataset, phantoms, splits).
``python -m train`` also dispatches to the commands that live elsewhere: ``push`` (``publish.push``)
and the studies ``demo``, ``real``, ``ablation`` and ``metadata-benchmark`` (``experiments``).
"""
