"""Sparkle-VLM: teach and measure 2D spatial reasoning in vision-language models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
