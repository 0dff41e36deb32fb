"""Gradio demo (placeholder until the demo issue lands)."""
