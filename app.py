"""dermfuse's Gradio app: ``python app.py [--model SOURCE] [--host H] [--port P] [--share]``.

A thin shell over :mod:`dermfuse.ui`. The model is loaded once, here at import (so tests can
``import app`` and use ``app.demo``); a source that cannot be loaded stops the app at start-up.
Model source: ``--model``, else ``$DERMFUSE_MODEL``, else ``checkpoints/dermfuse-small-ham10000``: a
local folder or a Hugging Face Hub repo id. Host and port default to Gradio's (127.0.0.1:7860, or
``$GRADIO_SERVER_NAME`` / ``$GRADIO_SERVER_PORT``, which Hugging Face Spaces set).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage data leaves a medical demo by default

from dermfuse.sources import MODEL_ENV  # noqa: E402
from dermfuse.ui import LAUNCH_OPTIONS, ModelCatalog, ModelSourceError, build_demo  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start the dermfuse app.")
    parser.add_argument("--model", help=f"model folder or Hub repo id (default: ${MODEL_ENV} or the shipped HAM10000 model)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 to serve the network)")
    parser.add_argument("--port", type=int, help="port (default 7860, or the next free one)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    return parser.parse_args(argv)


args = parse_args(None if __name__ == "__main__" else [])
try:
    demo = build_demo(ModelCatalog.open(args.model))
except ModelSourceError as error:
    if __name__ != "__main__":
        raise
    sys.exit(f"dermfuse app: {error}")

if __name__ == "__main__":
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_OPTIONS)
