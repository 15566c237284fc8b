"""Fine-tuning on Sparkle data: SFT and GRPO through TRL + PEFT, and the paper's reproduction.

Modules: :mod:`~sparkle_vlm.train.config` (YAML configs), :mod:`~sparkle_vlm.train.data` (records ->
TRL datasets), :mod:`~sparkle_vlm.train.sft`, :mod:`~sparkle_vlm.train.grpo`,
:mod:`~sparkle_vlm.train.rewards` (verifier-based rewards), :mod:`~sparkle_vlm.train.reproduce`
(``sparkle reproduce``) and :mod:`~sparkle_vlm.train.tiny` (offline random models for tests and
benchmarks). Nothing here imports torch at module import time.
"""
