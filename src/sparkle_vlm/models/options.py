"""Typed reading of backend options.

Options reach a backend as a plain dict, often straight from the command line, so values may be
strings (``"true"``, ``"16"``). :class:`Options` converts them, names the option in every error
and rejects unknown options with a "did you mean" hint, so a typo never silently does nothing.
"""

from __future__ import annotations

import difflib
from typing import Any

from sparkle_vlm.errors import ConfigError

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


class Options:
    """Reads and validates the options of one backend.

    >>> o = Options("hf", {"device": "cpu", "trust_remote_code": "true"})
    >>> o.text("device"), o.flag("trust_remote_code", False), o.integer("batch_size", 4)
    ('cpu', True, 4)
    >>> o.finish()
    >>> o = Options("hf", {"devise": "cpu"})
    >>> _ = o.text("device")
    >>> o.finish()
    Traceback (most recent call last):
    ...
    sparkle_vlm.errors.ConfigError: devise: unknown option of backend 'hf'; did you mean 'device'? (options: device)
    """

    def __init__(self, backend: str, raw: dict[str, Any] | None) -> None:
        self.backend = backend
        self.raw = dict(raw or {})
        self._seen: set[str] = set()

    def _get(self, name: str) -> Any:
        self._seen.add(name)
        return self.raw.get(name)

    def value(self, name: str, default: Any = None) -> Any:
        """The raw value of an option (for structured values such as dicts)."""
        v = self._get(name)
        return default if v is None else v

    def text(self, name: str, default: str | None = None) -> str | None:
        """A string option (``None`` and ``""`` give the default)."""
        v = self._get(name)
        if v is None or v == "":
            return default
        return v if isinstance(v, str) else str(v)

    def flag(self, name: str, default: bool) -> bool:
        """A boolean option; accepts ``true/false/1/0/yes/no``."""
        v = self._get(name)
        if v is None:
            return default
        if isinstance(v, bool):
            return v
        s = str(v).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ConfigError(name, f"expected true or false, got {v!r}")

    def integer(self, name: str, default: int | None, *, minimum: int | None = None) -> int | None:
        """An integer option, optionally bounded below."""
        v = self._get(name)
        if v is None or v == "":
            return default
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            out = int(v)
        except (TypeError, ValueError):
            raise ConfigError(name, f"expected an integer, got {v!r}") from None
        if minimum is not None and out < minimum:
            raise ConfigError(name, f"must be >= {minimum}, got {out}")
        return out

    def number(self, name: str, default: float | None, *, minimum: float | None = None) -> float | None:
        """A number option, optionally bounded below."""
        v = self._get(name)
        if v is None or v == "":
            return default
        try:
            if isinstance(v, bool):
                raise ValueError
            out = float(v)
        except (TypeError, ValueError):
            raise ConfigError(name, f"expected a number, got {v!r}") from None
        if out != out or (minimum is not None and out < minimum):
            raise ConfigError(name, f"must be a number >= {minimum}, got {v!r}")
        return out

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """A string option restricted to ``choices``."""
        v = self.text(name, default)
        assert v is not None
        if v not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def finish(self) -> None:
        """Raise :class:`ConfigError` for the first option that no reader asked for."""
        for key in self.raw:
            if key not in self._seen:
                known = sorted(self._seen)
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    key, f"unknown option of backend {self.backend!r}{hint} (options: {', '.join(known)})"
                )
