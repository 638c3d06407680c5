"""Publishing a trained model: its model card (``card``) and the exported folder with its Hub upload (``push``).

Apart from ``train`` because it only reads a finished run's files: ``python -m train push`` and the
checkpoint builders in ``experiments`` call it after fitting is done.
"""
