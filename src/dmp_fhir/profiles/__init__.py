"""DMP profiles and terminology: conformance resources loaded from ``profiles/`` and a small
validator for exactly the constructs those profiles use."""

from .conformance import (
    Conformance,
    Enforcement,
    default_conformance,
    load_conformance,
)
from .terminology import ConformanceError

__all__ = [
    "Conformance",
    "ConformanceError",
    "Enforcement",
    "default_conformance",
    "load_conformance",
]
