"""Profiles compiled from StructureDefinition differentials, and the check they run.

A deliberately small validator: it understands exactly the constructs the project's profiles
use — cardinality (``min``/``max``) on a path, ``fixed[x]``, ``pattern[x]``, ``required``
bindings to local ValueSets, slicing of a repeating element by the value of a child (e.g.
``identifier`` by ``system``), and the target resource types of a Reference (``type`` with
``targetProfile``s of base R4 resources). Compiling a profile that uses anything else (an
invariant, ``maxLength``, a choice path, another type constraint…) raises ``ConformanceError``:
a profile is never loaded with rules that would silently go unchecked.

A profile derives from the base R4 resource or from another loaded profile of the same type
(its ``baseDefinition``): an instance is checked against the rules of the whole chain, each
issue naming the profile that states the rule (``conformance.py`` resolves the chains).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import Issue
from .terminology import ConformanceError, Terminology

#: ElementDefinition keys that only document (no rule to check).
_DOC_KEYS = frozenset(
    {"id", "path", "short", "definition", "comment", "requirements", "alias", "mustSupport"}
)
_RULE_KEYS = frozenset({"sliceName", "slicing", "min", "max", "binding", "type"})
R4_BASE = "http://hl7.org/fhir/StructureDefinition/"
_BINDING_KEYS = frozenset({"strength", "valueSet", "description"})
_SD_REQUIRED = {"derivation": "constraint", "kind": "resource", "fhirVersion": "4.0.1"}


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    slice: str | None = None


@dataclass(slots=True)
class ElementRule:
    """What one differential element asks of the instances at its path."""

    id: str
    segments: tuple[Segment, ...]
    min: int = 0
    max: int | None = None  # None: unbounded or not constrained
    fixed: Any = None
    pattern: Any = None
    binding: str | None = None  # required ValueSet
    discriminator: str | None = None  # set on a sliced element: the child path that tells slices apart
    targets: tuple[str, ...] = ()  # a Reference's allowed target resource types (() = any)


@dataclass(slots=True)
class Profile:
    url: str
    name: str
    type: str
    rules: list[ElementRule] = field(default_factory=list)
    #: The path down to a slice (its last segment carries the slice name) → the rule on the
    #: slice's discriminating child, which decides which repetitions belong to the slice.
    slice_keys: dict[tuple[Segment, ...], ElementRule] = field(default_factory=dict)
    parent: str | None = None  # the baseDefinition when it is a profile, not the base resource


def compile_profile(sd: dict[str, Any], terminology: Terminology) -> Profile:
    """Compile a StructureDefinition (differential only); ConformanceError when unsupported."""
    url = sd.get("url")
    label = f"StructureDefinition {url or sd.get('id')}"
    rtype = sd.get("type")
    if (
        sd.get("resourceType") != "StructureDefinition"
        or not isinstance(url, str)
        or not isinstance(rtype, str)
    ):
        raise ConformanceError(f"{label}: not a StructureDefinition with a url and a type.")
    for key, expected in _SD_REQUIRED.items():
        if sd.get(key) != expected:
            raise ConformanceError(f"{label}: {key} must be '{expected}'.")
    base = sd.get("baseDefinition")
    if not isinstance(base, str) or (base.startswith(R4_BASE) and base != f"{R4_BASE}{rtype}"):
        raise ConformanceError(
            f"{label}: the baseDefinition must be the base R4 {rtype} or a profile of it loaded here."
        )
    if "snapshot" in sd:
        raise ConformanceError(f"{label}: snapshots are not read; give a differential only.")
    elements = (sd.get("differential") or {}).get("element")
    if not elements:
        raise ConformanceError(f"{label}: empty differential.")
    profile = Profile(url, str(sd.get("name")), rtype, parent=None if base.startswith(R4_BASE) else base)
    by_id: dict[str, ElementRule] = {}
    for element in elements:
        rule = _compile_element(element, rtype, label, terminology)
        if rule.id in by_id:
            raise ConformanceError(f"{label}: element {rule.id} appears twice.")
        by_id[rule.id] = rule
        if rule.segments:
            profile.rules.append(rule)
    _link_slices(profile, by_id, label)
    return profile


def _compile_element(
    element: dict[str, Any], rtype: str, label: str, terminology: Terminology
) -> ElementRule:
    path, eid = element.get("path"), element.get("id")
    if not isinstance(path, str) or not isinstance(eid, str):
        raise ConformanceError(f"{label}: every element needs an id and a path.")
    where = f"{label}, element {eid}"
    for key in element:
        if key in _DOC_KEYS or key in _RULE_KEYS or key.startswith(("fixed", "pattern")):
            continue
        raise ConformanceError(f"{where}: '{key}' is not supported by this server's validator.")
    segments = _segments(eid, rtype, where)
    if ".".join(s.name for s in segments) != path.partition(".")[2] and segments:
        raise ConformanceError(f"{where}: id and path disagree ({path}).")
    rule_keys = [k for k in element if k in _RULE_KEYS or k.startswith(("fixed", "pattern"))]
    if not segments and rule_keys:
        raise ConformanceError(f"{where}: rules on the root element are not supported.")
    rule = ElementRule(eid, segments)
    if "min" in element:
        rule.min = int(element["min"])
    if "max" in element:
        rule.max = None if element["max"] == "*" else int(element["max"])
    fixed = [k for k in element if k.startswith("fixed")]
    pattern = [k for k in element if k.startswith("pattern")]
    if len(fixed) + len(pattern) > 1:
        raise ConformanceError(f"{where}: more than one fixed/pattern value.")
    if fixed:
        rule.fixed = element[fixed[0]]
    if pattern:
        rule.pattern = element[pattern[0]]
    binding = element.get("binding")
    if binding is not None:
        if set(binding) - _BINDING_KEYS or binding.get("strength") != "required" or "valueSet" not in binding:
            raise ConformanceError(f"{where}: only required bindings to a valueSet are checked.")
        terminology.expand(binding["valueSet"])  # unknown or unexpandable: fail now
        rule.binding = binding["valueSet"]
    if "type" in element:
        rule.targets = _reference_targets(element["type"], where)
    if "slicing" in element:
        slicing = element["slicing"]
        disc = slicing.get("discriminator") or []
        if (
            len(disc) != 1
            or disc[0].get("type") not in ("value", "pattern")
            or "." in str(disc[0].get("path"))
            or slicing.get("rules", "open") != "open"
            or slicing.get("ordered", False)
        ):
            raise ConformanceError(
                f"{where}: only open, unordered slicing on one value/pattern discriminator (a direct child)."
            )
        rule.discriminator = str(disc[0]["path"])
    if "sliceName" in element and (not segments or segments[-1].slice != element["sliceName"]):
        raise ConformanceError(f"{where}: sliceName must match the id's ':name'.")
    return rule


def _reference_targets(types: Any, where: str) -> tuple[str, ...]:
    """``type: [{code: Reference, targetProfile: [<base R4 resource>…]}]`` → the resource types."""
    if (
        not isinstance(types, list)
        or len(types) != 1
        or not isinstance(types[0], dict)
        or set(types[0]) != {"code", "targetProfile"}
        or types[0]["code"] != "Reference"
        or not isinstance(types[0]["targetProfile"], list)
        or not types[0]["targetProfile"]
    ):
        raise ConformanceError(f"{where}: of type constraints, only a Reference's targetProfile is checked.")
    targets: list[str] = []
    for url in types[0]["targetProfile"]:
        name = url[len(R4_BASE) :] if isinstance(url, str) and url.startswith(R4_BASE) else ""
        if not name or not name.isidentifier() or not name[0].isupper():
            raise ConformanceError(f"{where}: targetProfile {url!r} is not a base R4 resource.")
        targets.append(name)
    return tuple(targets)


def _segments(eid: str, rtype: str, where: str) -> tuple[Segment, ...]:
    head, _, rest = eid.partition(".")
    if head != rtype:
        raise ConformanceError(f"{where}: the path must start with {rtype}.")
    segments: list[Segment] = []
    for part in rest.split(".") if rest else []:
        name, _, slice_name = part.partition(":")
        if not name or "[x]" in name or not name.isidentifier():
            raise ConformanceError(f"{where}: path segment '{part}' is not supported (no choice types).")
        segments.append(Segment(name, slice_name or None))
    if sum(1 for s in segments if s.slice) > 1:
        raise ConformanceError(f"{where}: nested slices are not supported.")
    return tuple(segments)


def _link_slices(profile: Profile, by_id: dict[str, ElementRule], label: str) -> None:
    """Each slice must be told apart by a fixed/pattern/binding on the discriminator child."""
    declared = {r.segments for r in profile.rules}
    for rule in profile.rules:
        for depth, segment in enumerate(rule.segments[:-1]):
            if segment.slice and rule.segments[: depth + 1] not in declared:
                raise ConformanceError(f"{label}: {rule.id} is inside a slice that is not declared.")
        last = rule.segments[-1]
        if last.slice is None:
            continue
        base_id = rule.id.rsplit(":", 1)[0]
        base = by_id.get(base_id)
        if base is None or base.discriminator is None:
            raise ConformanceError(f"{label}: slice {rule.id} without a slicing on {base_id}.")
        key = by_id.get(f"{rule.id}.{base.discriminator}")
        if key is None or (key.fixed is None and key.pattern is None and key.binding is None):
            raise ConformanceError(
                f"{label}: slice {rule.id} needs a fixed, pattern or binding on {base.discriminator}."
            )
        profile.slice_keys[rule.segments] = key


# -- checking ---------------------------------------------------------------------------


def check(resource: dict[str, Any], profile: Profile, terminology: Terminology) -> list[Issue]:
    """Every rule of ``profile`` against ``resource``; one issue per violation, with its path."""
    issues: list[Issue] = []
    for rule in profile.rules:
        for parent, parent_path in _instances(
            resource, profile.type, rule.segments[:-1], profile, terminology
        ):
            children = list(_children(parent, parent_path, rule.segments, profile, terminology))
            last = rule.segments[-1]
            here = f"{parent_path}.{last.name}" + (f":{last.slice}" if last.slice else "")
            if len(children) < rule.min:
                issues.append(
                    _issue(
                        profile,
                        rule,
                        "required",
                        here,
                        f"at least {rule.min} required, found {len(children)}",
                    )
                )
            if rule.max is not None and len(children) > rule.max:
                issues.append(
                    _issue(
                        profile, rule, "structure", here, f"at most {rule.max} allowed, found {len(children)}"
                    )
                )
            for value, path in children:
                issues += _value_issues(value, path, rule, profile, terminology)
    return issues


def _value_issues(
    value: Any, path: str, rule: ElementRule, profile: Profile, terminology: Terminology
) -> list[Issue]:
    out: list[Issue] = []
    if rule.fixed is not None and value != rule.fixed:
        out.append(_issue(profile, rule, "value", path, f"must be exactly {_short(rule.fixed)}"))
    if rule.pattern is not None and not matches_pattern(rule.pattern, value):
        out.append(_issue(profile, rule, "value", path, f"must match the pattern {_short(rule.pattern)}"))
    if rule.targets:
        target = reference_type(value)
        if target is not None and target not in rule.targets:
            allowed = " or ".join(rule.targets)
            what = f"refers to a {target}; only {allowed} allowed"
            out.append(_issue(profile, rule, "invalid", path, what))
    if rule.binding is not None and not in_value_set(value, rule.binding, terminology):
        out.append(
            _issue(
                profile,
                rule,
                "code-invalid",
                path,
                f"{_short(value)} is not in ValueSet {rule.binding} (required binding)",
            )
        )
    return out


def _instances(
    resource: dict[str, Any],
    rtype: str,
    segments: tuple[Segment, ...],
    profile: Profile,
    terminology: Terminology,
) -> Iterator[tuple[Any, str]]:
    """The values at ``segments`` (and their paths), following every repetition."""
    level: list[tuple[Any, str]] = [(resource, rtype)]
    for depth in range(len(segments)):
        nxt: list[tuple[Any, str]] = []
        for node, path in level:
            nxt += _children(node, path, segments[: depth + 1], profile, terminology)
        level = nxt
    yield from level


def _children(
    node: Any,
    path: str,
    segments: tuple[Segment, ...],  # down to the child; the last one is the child's name
    profile: Profile,
    terminology: Terminology,
) -> Iterator[tuple[Any, str]]:
    """The repetitions of the last segment under ``node`` (only a slice's members for a slice)."""
    segment = segments[-1]
    if not isinstance(node, dict) or segment.name not in node:
        return
    raw = node[segment.name]
    items = (
        [(v, f"{path}.{segment.name}[{i}]") for i, v in enumerate(raw)]
        if isinstance(raw, list)
        else [(raw, f"{path}.{segment.name}")]
    )
    if segment.slice is not None:
        key = profile.slice_keys[segments]
        disc = key.segments[-1].name
        items = [
            (v, p) for v, p in items if isinstance(v, dict) and _matches_key(v.get(disc), key, terminology)
        ]
    yield from ((v, p) for v, p in items if v is not None)


def _matches_key(value: Any, key: ElementRule, terminology: Terminology) -> bool:
    if value is None:
        return False
    if key.fixed is not None:
        return bool(value == key.fixed)
    if key.pattern is not None:
        return matches_pattern(key.pattern, value)
    return key.binding is not None and in_value_set(value, key.binding, terminology)


def reference_type(value: Any) -> str | None:
    """The resource type a Reference names (its literal ``Type/id``, else ``Reference.type``);
    None when it cannot tell (a contained ``#id``, a URN, a logical identifier alone)."""
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    if isinstance(ref, str) and not ref.startswith(("#", "urn:")):
        parts = ref.split("?")[0].split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2]
    declared = value.get("type")
    return declared if isinstance(declared, str) else None


def matches_pattern(pattern: Any, value: Any) -> bool:
    """FHIR pattern semantics: every property of the pattern is present and matches; each
    repetition in the pattern matches some repetition of the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(matches_pattern(v, value.get(k)) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(matches_pattern(p, v) for v in value) for p in pattern)
    return bool(pattern == value)


def in_value_set(value: Any, url: str, terminology: Terminology) -> bool:
    """A code/uri, a Coding, or a CodeableConcept (one of its codings) in the value set."""
    if isinstance(value, str):
        return terminology.contains(url, None, value)
    if not isinstance(value, dict):
        return False
    if "coding" in value:
        codings = value.get("coding")
        return isinstance(codings, list) and any(in_value_set(c, url, terminology) for c in codings)
    system, code = value.get("system"), value.get("code")
    return isinstance(system, str) and isinstance(code, str) and terminology.contains(url, system, code)


def _issue(profile: Profile, rule: ElementRule, code: str, path: str, what: str) -> Issue:
    return Issue(
        code,
        f"{path}: {what} (profile {profile.url}, rule {rule.id})",
        expression=(path.split(":")[0] if ":" in path.rsplit(".", 1)[-1] else path,),
    )


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 160 else text[:157] + "..."
