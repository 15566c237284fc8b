"""The ``sparkle`` command line."""
