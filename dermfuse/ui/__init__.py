"""The Gradio app of dermfuse: ``build_demo(ModelCatalog.open(source))``; ``app.py`` launches it.

- ``models``: which models the app offers; the chosen one is loaded (and warmed up) at start-up;
- ``callbacks``: the event functions, pure functions of their inputs;
- ``views``: a diagnosis as pictures and plain words, shared by the page and the report;
- ``report``: the downloadable case sheet (PNG / PDF) and JSON;
- ``examples``: the galleries: real CC0 dermoscopy examples, and phantoms for the teaching view;
- ``layout``: the page, its events (each with an ``api_name``) and its launch options.
"""

from .layout import LAUNCH_OPTIONS, build_demo
from .catalog import ModelCatalog, ModelSourceError

__all__ = ["LAUNCH_OPTIONS", "ModelCatalog", "ModelSourceError", "build_demo"]
