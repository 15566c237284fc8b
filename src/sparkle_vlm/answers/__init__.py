"""Answers: parse untrusted model text, then verify it against the record.

Parsers never raise; an answer that cannot be read is ``unparsable``, counted apart from wrong
answers. Evaluation metrics and RL rewards call the same :func:`score`.
"""

from sparkle_vlm.answers.types import OUTCOMES, Verdict
from sparkle_vlm.answers.verify import SCORERS, score

__all__ = ["OUTCOMES", "SCORERS", "Verdict", "score"]
