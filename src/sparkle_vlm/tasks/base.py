"""What a task is: a pure function of (task id and version, config, seed, index).

A task draws one *scene* per index and turns it into one or more canonical records (one per
question). Rendering is a separate pure function of the scene, so the same scene always gives
the same PNG bytes and the text twins need no image at all.

To add a task: write ``tasks/<name>.py`` with a config dataclass (subclass of
:class:`TaskConfig`) and a :class:`Task` subclass, decorate it with ``@TASKS.register``, and
import the module in ``tasks/__init__.py``. The registry-wide tests then check it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from PIL import Image

from sparkle_vlm.errors import ConfigError
from sparkle_vlm.records import image_path
from sparkle_vlm.registry import Registry

#: Smallest image side we render; below this labels are unreadable and Qwen-style processors fail.
MIN_SIZE = 112
MAX_SIZE = 4096


@dataclass(frozen=True)
class TaskConfig:
    """Options every task has.

    ``n`` is the number of scenes (images); a scene yields one or more records.
    """

    n: int = 200
    size: int = 448

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        if not isinstance(self.n, int) or self.n < 0:
            raise ConfigError("n", f"must be a non-negative integer, got {self.n!r}")
        if not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ConfigError("size", f"must be an integer in [{MIN_SIZE}, {MAX_SIZE}] px, got {self.size!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Sample:
    """One scene and the records drawn from it.

    ``image`` is the record-relative image path, or None for text-only samples.
    """

    index: int
    scene: dict[str, Any]
    records: list[dict[str, Any]]
    image: str | None


class Task(ABC):
    """Base class of all tasks. Subclasses set the class variables and implement two methods."""

    id: ClassVar[str]
    version: ClassVar[int]
    split: ClassVar[str]
    description: ClassVar[str]
    config_cls: ClassVar[type[TaskConfig]] = TaskConfig

    def make_config(self, **overrides: Any) -> TaskConfig:
        """A validated config from defaults and overrides; unknown fields are named in the error."""
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        for key in overrides:
            if key not in fields:
                raise ConfigError(key, f"not an option of task {self.id!r} (options: {', '.join(fields)})")
        cfg = self.config_cls(**overrides)
        cfg.validate()
        return cfg

    def tag(self, config: TaskConfig) -> str:
        """The prefix of record ids and image names; variants that may be mixed must differ."""
        return self.id

    def split_of(self, config: TaskConfig) -> str:
        """The split a config produces (tasks with a ``split`` option override the default)."""
        return str(getattr(config, "split", self.split))

    def image_for(self, config: TaskConfig, seed: int, index: int) -> str:
        return image_path(self.tag(config), self.split_of(config), seed, index)

    @abstractmethod
    def sample(self, config: TaskConfig, seed: int, index: int) -> Sample:
        """Draw scene ``index`` of ``seed`` and its records. Must be a pure function."""

    @abstractmethod
    def render(self, scene: dict[str, Any], size: int) -> Image.Image:
        """Draw a scene record. Must be a pure function of its arguments."""


TASKS: Registry[Task] = Registry("task")


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: instantiate and register a task under its ``id``."""
    TASKS.add(cls.id, cls())
    return cls


def get_task(name: str) -> Task:
    """The registered task called ``name``."""
    import sparkle_vlm.tasks  # noqa: F401  (registers the built-in tasks)

    return TASKS.get(name)
