"""The project's CodeSystems and ValueSets, expanded in memory (no terminology server).

Only the compose constructs the project's value sets use are understood: ``include`` with an
explicit ``concept`` list, with a whole ``system`` that is one of our own complete CodeSystems,
or with ``valueSet`` references. Anything else (filters, excludes, an external system without a
concept list) makes loading fail, so a binding is never checked against a partial expansion.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


class ConformanceError(ValueError):
    """A conformance resource uses a construct this server cannot check: refuse to start."""


@dataclass(frozen=True, slots=True)
class Concept:
    system: str
    code: str
    display: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


_INCLUDE_KEYS = frozenset({"system", "version", "concept", "valueSet"})
_COMPOSE_KEYS = frozenset({"include", "lockedDate", "inactive"})


class Terminology:
    """CodeSystems and ValueSets by canonical URL, with cached expansions."""

    def __init__(self, code_systems: Iterable[dict[str, Any]], value_sets: Iterable[dict[str, Any]]) -> None:
        self.code_systems = {_url(cs): cs for cs in code_systems}
        self.value_sets = {_url(vs): vs for vs in value_sets}
        self._expansions: dict[str, tuple[Concept, ...]] = {}
        self._members: dict[str, frozenset[tuple[str, str]]] = {}
        for url in self.value_sets:
            self.expand(url)  # every value set must expand at load time

    def expand(self, url: str) -> tuple[Concept, ...]:
        """Every concept of the value set (first display wins), in compose order."""
        cached = self._expansions.get(url)
        if cached is None:
            cached = tuple(_unique(self._expand(url, ())))
            self._expansions[url] = cached
            self._members[url] = frozenset((c.system, c.code) for c in cached)
        return cached

    def contains(self, url: str, system: str | None, code: str) -> bool:
        """Is (system, code) in the value set? ``system`` None: a bare code/uri, any system."""
        self.expand(url)
        if system is not None:
            return (system, code) in self._members[url]
        return any(c == code for _, c in self._members[url])

    def _expand(self, url: str, seen: tuple[str, ...]) -> Iterator[Concept]:
        if url in seen:
            raise ConformanceError(f"ValueSet {url} includes itself ({' → '.join((*seen, url))}).")
        vs = self.value_sets.get(url)
        if vs is None:
            raise ConformanceError(f"ValueSet {url} is not loaded ({' → '.join(seen) or 'binding'}).")
        compose = vs.get("compose")
        if not isinstance(compose, dict) or not compose.get("include"):
            raise ConformanceError(f"ValueSet {url} has no compose.include.")
        unknown = set(compose) - _COMPOSE_KEYS
        if unknown:
            raise ConformanceError(f"ValueSet {url}: compose.{sorted(unknown)[0]} is not supported.")
        for include in compose["include"]:
            unknown = set(include) - _INCLUDE_KEYS
            if unknown:
                raise ConformanceError(f"ValueSet {url}: include.{sorted(unknown)[0]} is not supported.")
            system, concepts, refs = include.get("system"), include.get("concept"), include.get("valueSet")
            if refs and (system or concepts):
                raise ConformanceError(
                    f"ValueSet {url}: include mixing valueSet and system is not supported."
                )
            if refs:
                for ref in refs:
                    yield from self._expand(ref, (*seen, url))
            elif concepts:
                for concept in concepts:
                    yield Concept(
                        system,
                        concept["code"],
                        concept.get("display") or self._display(system, concept["code"]),
                    )
            elif system:
                cs = self.code_systems.get(system)
                if cs is None or cs.get("content") != "complete":
                    raise ConformanceError(
                        f"ValueSet {url} includes all of {system}, which is not a complete local CodeSystem."
                    )
                yield from (
                    Concept(system, c["code"], c.get("display")) for c in _flatten(cs.get("concept", []))
                )
            else:
                raise ConformanceError(f"ValueSet {url}: an include needs a system or a valueSet.")

    def _display(self, system: str, code: str) -> str | None:
        cs = self.code_systems.get(system)
        if cs is None:
            return None
        return next(
            (c.get("display") for c in _flatten(cs.get("concept", [])) if c.get("code") == code), None
        )


def _url(resource: dict[str, Any]) -> str:
    url = resource.get("url")
    if not isinstance(url, str) or not url:
        raise ConformanceError(f"{resource.get('resourceType')}/{resource.get('id')} has no url.")
    return url


def _flatten(concepts: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for concept in concepts:
        yield concept
        yield from _flatten(concept.get("concept", []))


def _unique(concepts: Iterable[Concept]) -> Iterator[Concept]:
    seen: set[tuple[str, str]] = set()
    for concept in concepts:
        key = (concept.system, concept.code)
        if key not in seen:
            seen.add(key)
            yield concept
