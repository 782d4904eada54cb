"""Glue between the Pulumi runtime and the pure settings code."""

from __future__ import annotations

import pulumi
from pulumi.runtime.config import CONFIG

from .settings import NAMESPACE, ConfigError, Settings, settings_from


def stack_config() -> dict[str, str]:
    """Every `pairing:` key set for this stack, unknown ones included, so a typo is reported."""
    prefix = NAMESPACE + ":"
    return {key[len(prefix):]: value for key, value in CONFIG.get().items() if key.startswith(prefix)}


def load_settings() -> Settings:
    """Validated settings, or a one-line error (no traceback) before any resource exists."""
    try:
        return settings_from(stack_config())
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
