"""Built-in tasks. Importing this package registers them in :data:`TASKS`."""

from sparkle_vlm.tasks import (
    basic_mcq,  # noqa: F401
    instruct,  # noqa: F401
    spp,  # noqa: F401
    tsp,  # noqa: F401
)
from sparkle_vlm.tasks.base import TASKS, Sample, Task, TaskConfig, get_task

__all__ = ["TASKS", "Sample", "Task", "TaskConfig", "get_task"]
