"""Renderers: Report -> text, JSON, CSV, Markdown, transcripts. They only read a Report."""
