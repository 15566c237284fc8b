"""Evaluation: suites of canonical records, a resumable runner, metrics and statistics.

``run_eval(EvalConfig(...))`` is what ``sparkle eval`` calls; see :mod:`sparkle_vlm.eval.runner`.
"""

from sparkle_vlm.eval.runner import EvalConfig, run_eval
from sparkle_vlm.eval.stats import mcnemar_exact, paired_bootstrap_ci, paired_compare, wilson_interval
from sparkle_vlm.eval.suites import EVAL_SUITES, resolve_suite

__all__ = [
    "EVAL_SUITES",
    "EvalConfig",
    "mcnemar_exact",
    "paired_bootstrap_ci",
    "paired_compare",
    "resolve_suite",
    "run_eval",
    "wilson_interval",
]
