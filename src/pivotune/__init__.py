"""pivotune: adapt English-centric LLMs to other languages by instruction tuning."""

__version__ = "0.1.0"
