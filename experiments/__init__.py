"""The studies behind ``docs/RESULTS.md`` and the checkpoints they ship; each is also a ``python -m train`` command.

``ham10000`` (the real-data model, the app's default: HAM10000 + ISIC 2018 Task 1, scored through
the pipeline, then its checkpoint), ``ablation`` (the paper's ablation and the shortcut experiment,
on phantoms), ``real`` (PH2, cross-validated, then its checkpoint), ``demo`` (the phantom demo checkpoint), ``metadata_benchmark``
(age, sex and site alone on the real tables) with ``independent_lr`` (an independent check of one of
its rows), and ``results`` with ``report_sections`` (writes ``docs/RESULTS.md`` from the JSON they
leave). They use ``train`` to fit and ``publish`` to export; speed measurements live in ``benchmarks/``.
"""
