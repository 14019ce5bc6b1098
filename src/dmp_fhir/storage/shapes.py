"""Every query shape the server issues, in one place, and the indexes that serve them.

A shape is a collection, the fields its filter leads with (plain equalities, in order) and
its sort. :func:`index_models` turns the catalogue into the indexes created at start-up (on
MongoDB they serve the shapes; on the embedded FerretDB each index's leading field is mirrored
as a GIN index, see ``devdb.GIN_MIRRORS``). ``tests/test_query_shapes.py`` ``explain()``s every
shape on an engine with real indexes and fails on a collection scan, and the round-trip tests
check that each query a request sends is led by a catalogued shape.

``<type>`` stands for the current-version collection of every resource type, ``<history>`` for
its ``_history`` twin; the search parameters add one shape per indexed ``_s_`` field
(``search.indexes.index_fields``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pymongo import ASCENDING, DESCENDING, IndexModel

from ..registry import RESOURCE_TYPES

EVERY_TYPE = "<type>"
EVERY_HISTORY = "<history>"


@dataclass(frozen=True, slots=True)
class QueryShape:
    collection: str
    keys: tuple[str, ...]  # leading equalities, in index order
    sort: tuple[tuple[str, int], ...] = ()
    why: str = ""
    unique: bool = False  # a "one writer wins" decision rests on it

    @property
    def index_keys(self) -> list[tuple[str, int]]:
        return [(k, ASCENDING) for k in self.keys] + [s for s in self.sort if s[0] not in self.keys]


SHAPES: tuple[QueryShape, ...] = (
    # -- resources ---------------------------------------------------------------------
    QueryShape(EVERY_TYPE, ("_id",), why="read, conditional references, includes by id"),
    QueryShape(EVERY_TYPE, ("_deleted",), (("_lu", DESCENDING),), "unfocused search pages"),
    QueryShape(EVERY_TYPE, ("_p_patient",), why="the policy's patient scope; destruction"),
    QueryShape(EVERY_HISTORY, ("_id",), why="vread (id/version)"),
    QueryShape(EVERY_HISTORY, ("_rid",), (("_v", DESCENDING),), "newest version, history, claims", True),
    QueryShape(EVERY_HISTORY, (), (("_lu", DESCENDING),), "type and system history, newest first"),
    QueryShape(EVERY_HISTORY, ("_p_patient",), why="destruction, claimed versions of a patient"),
    # -- the access policy's facts -----------------------------------------------------
    QueryShape("PractitionerRole", ("_s_practitioner",), why="the caller's roles"),
    QueryShape("Consent", ("_p_patient",), why="the patient's consents (every professional request)"),
    QueryShape("Consent", ("_p_actors",), why="patients whose consents name the caller"),
    QueryShape("Patient", ("_p_gp",), why="patients whose médecin traitant is the caller"),
    QueryShape("Binary", ("_p_document",), why="a document's content (write checks, dependents)"),
    QueryShape("List", ("_s_item",), why="submission sets listing a document (dependents)"),
    QueryShape("DocumentReference", ("_p_keys",), why="occupational-health retention"),
    QueryShape("DocumentReference", ("_s_identifier",), why="duplicate masterIdentifier check"),
    QueryShape("dmp_record", ("_id",), why="a record's status"),
    QueryShape("dmp_record", ("status",), why="closed records (unfocused searches, purge)"),
    QueryShape("dmp_ins", ("_id",), why="one DMP per INS"),
    QueryShape("dmp_identifier", ("_id",), why="one resource per identifier (conditional create)"),
    QueryShape("dmp_identifier", ("rid",), why="claims of a destroyed resource"),
    QueryShape("dmp_identifier", ("patient",), why="claims of a destroyed record"),
    # -- audit trail -------------------------------------------------------------------
    QueryShape("AuditEvent_history", ("_seq",), why="the chain's links (head, repair, verify)", unique=True),
    QueryShape("AuditEvent", ("_seq",), why="served copy of a link (start-up repair)"),
    # -- transaction journal -----------------------------------------------------------
    QueryShape("_transactions", ("_id",), why="a transaction's entry"),
    QueryShape("_transaction_outcomes", ("_id",), why="a transaction's decision"),
)


def collections_of(shape: QueryShape) -> list[str]:
    if shape.collection == EVERY_TYPE:
        return [t.collection for t in RESOURCE_TYPES.values()]
    if shape.collection == EVERY_HISTORY:
        return [t.history_collection for t in RESOURCE_TYPES.values()]
    return [shape.collection]


def all_shapes(search_fields: dict[str, list[str]]) -> list[tuple[str, QueryShape]]:
    """(collection, shape) for every catalogued shape and every indexed search field."""
    out = [(coll, shape) for shape in SHAPES for coll in collections_of(shape)]
    for rtype, fields in search_fields.items():
        coll = RESOURCE_TYPES[rtype].collection
        out += [(coll, QueryShape(coll, (f,), why="search parameter")) for f in fields]
        if "_s_patient" in fields:
            # A patient's page, newest first, without sorting their whole record.
            out.append((coll, QueryShape(coll, ("_s_patient",), (("_lu", DESCENDING),), "patient's page")))
    return out


def index_models(search_fields: dict[str, list[str]]) -> dict[str, list[IndexModel]]:
    """Per collection, the indexes the shapes need (``_id`` has its own)."""
    out: dict[str, dict[str, IndexModel]] = {}
    for coll, shape in all_shapes(search_fields):
        if shape.keys == ("_id",):
            continue
        model = IndexModel(shape.index_keys, unique=shape.unique)
        out.setdefault(coll, {}).setdefault(model.document["name"], model)
    return {coll: list(models.values()) for coll, models in out.items()}


def catalogued(
    collection: str, filter_keys: list[str], sort_keys: list[str], search_fields: dict[str, list[str]]
) -> bool:
    """Whether a query on ``collection`` (its filter's top-level keys, its sort keys) is served
    by a catalogued shape: one of its plain fields leads a shape, or a sort-only shape fits."""
    plain = {k for k in filter_keys if not k.startswith("$")}
    for coll, shape in all_shapes(search_fields):
        if coll != collection:
            continue
        if shape.keys and shape.keys[0] in plain:
            return True
        if not shape.keys and sort_keys and shape.sort[0][0] == sort_keys[0]:
            return True
    return False
