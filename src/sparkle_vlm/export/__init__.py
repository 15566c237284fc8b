"""Exporters: a dataset folder to the formats trainers and harnesses read.

``sparkle export DIR --format F --out OUT``; in Python, :func:`export_dataset`. Formats:
``ms-swift``, ``ms-swift-messages``, ``llava``, ``llama-factory``, ``hf``, ``trl``,
``lmms-eval``, ``vlmevalkit`` (one module each; see :mod:`sparkle_vlm.export.base` for the
guarantees they share). ``hf`` and ``lmms-eval`` need the ``data`` extra (datasets, pyarrow),
imported only when used.
"""

from sparkle_vlm.export import hf, llama_factory, llava, lmms_eval, ms_swift, trl, vlmevalkit  # noqa: F401
from sparkle_vlm.export.base import (
    EXPORT_MANIFEST,
    EXPORTERS,
    Exporter,
    ExportOptions,
    ExportResult,
    export_dataset,
)
from sparkle_vlm.export.columns import record_from_row

__all__ = [
    "EXPORTERS",
    "EXPORT_MANIFEST",
    "ExportOptions",
    "ExportResult",
    "Exporter",
    "export_dataset",
    "record_from_row",
]
