"""Imports every module that registers scorers in :data:`SCORERS`."""

from sparkle_vlm.answers import basic, composite  # noqa: F401
