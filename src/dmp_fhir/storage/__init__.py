"""The only package that talks to the database driver (a ruff rule keeps it so)."""

from .database import Database, EngineInfo
from .store import ResourceStore, StoredVersion

__all__ = ["Database", "EngineInfo", "ResourceStore", "StoredVersion"]
