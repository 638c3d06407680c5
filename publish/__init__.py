"""Publishing: a trained model's card (``card``) and Hub upload (``push``); the app's real examples
(``examples``) and the file set of its Hugging Face Space (``space``).

Apart from ``train`` because it only reads finished files: ``python -m train push`` and the
checkpoint builders in ``experiments`` call it after fitting is done.
"""
