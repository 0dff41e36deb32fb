"""Gradio demo: `python demo.py [--index indexes/NAME] [--reader default] [--host 127.0.0.1] [--port 7860]`.

The same as `rag demo ...`: the app lives in rag/app.py; this file only forwards its arguments.
"""
import sys

from rag.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
