"""FHIR XML <-> FHIR JSON conversion, used at the HTTP edge only.

The server stores, validates and serves FHIR JSON.  This module turns a FHIR XML
request body into the FHIR JSON object it stands for (:func:`parse_fhir_xml`) and
a FHIR JSON object into FHIR XML (:func:`render_fhir_xml`).

Both directions are *generic walkers* driven by the element metadata of the
fhir.resources R4B models (element order, cardinality, primitive type); they never
validate.  Parsing yields the JSON a client would have sent, invalid or not, so the
JSON validator can report problems with JSON paths; rendering works on partial
resources (``_elements`` / ``_summary`` subsets) as well as complete ones.

Rendering writes the XML text directly (attribute escaping, a final check for
characters XML cannot carry); lxml is only used to parse, and to re-serialise the
narrative div after a safe parse.

Security: XML is parsed by a hardened lxml parser (no entity resolution, no DTD
loading, no network, no huge trees, a resolver that refuses every external load)
and any document carrying a DOCTYPE, an entity or a processing instruction is
refused.  (Never pass ``collect_ids=False`` to the parser: with it libxml2 loads the
external DTD subset of a document.)  Nothing is ever read from disk or network.  XHTML narrative is kept as a
string and never interpreted.

Importing this module is cheap (lxml only); the fhir.resources models are loaded
the first time a resource type is converted and their metadata is cached.
"""

from __future__ import annotations

import math
import re
import threading
from decimal import Decimal
from operator import attrgetter
from typing import Any, Final

from lxml import etree

__all__ = ["FHIR_NS", "XHTML_NS", "XmlFormatError", "parse_fhir_xml", "render_fhir_xml"]

FHIR_NS: Final = "http://hl7.org/fhir"
XHTML_NS: Final = "http://www.w3.org/1999/xhtml"

_F: Final = "{" + FHIR_NS + "}"
_F_LEN: Final = len(_F)
_X: Final = "{" + XHTML_NS + "}"
_XHTML_DIV: Final = _X + "div"
_XSI: Final = "{http://www.w3.org/2001/XMLSchema-instance}"
_XHTML_NSMAP: Final = {None: XHTML_NS}
_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>\n'

# Cheap pre-scan; the authoritative check is on the parsed document.
_FORBIDDEN_MARKUP: Final = (b"<!DOCTYPE", b"<!ENTITY")

_RESOURCE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
_INTEGER = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,29})(\.[0-9]+)?([eE][+-]?[0-9]+)?")


class XmlFormatError(ValueError):
    """The body is not acceptable FHIR XML (malformed, unsafe or not FHIR)."""


# --------------------------------------------------------------------------- #
# Model metadata
# --------------------------------------------------------------------------- #

_PRIMITIVE: Final = 0
_COMPLEX: Final = 1
_RESOURCE: Final = 2
_XHTML: Final = 3

_J_STRING: Final = 0
_J_BOOLEAN: Final = 1
_J_INTEGER: Final = 2
_J_DECIMAL: Final = 3

_JSON_TYPE_OF: Final = {
    "boolean": _J_BOOLEAN,
    "integer": _J_INTEGER,
    "positiveInt": _J_INTEGER,
    "unsignedInt": _J_INTEGER,
    "decimal": _J_DECIMAL,
}


class _Elem:
    """One element of a FHIR type (choice types are expanded, e.g. ``valueBoolean``)."""

    __slots__ = ("jtype", "kind", "model", "name", "order", "repeats", "tag")

    def __init__(self, name: str, order: int, repeats: bool, kind: int, jtype: int, model: Any) -> None:
        self.name = name
        self.tag = _F + name
        self.order = order
        self.repeats = repeats
        self.kind = kind
        self.jtype = jtype
        self.model = model


class _TypeInfo:
    """Cached conversion metadata of one FHIR type (resource, datatype or backbone)."""

    __slots__ = ("attr_id", "attr_url", "elements", "is_resource", "keys", "name")

    def __init__(
        self,
        name: str,
        is_resource: bool,
        attr_id: bool,
        attr_url: bool,
        elements: dict[str, _Elem],
        keys: dict[str, _Elem],
    ) -> None:
        self.name = name
        self.is_resource = is_resource
        self.attr_id = attr_id  # ``id`` is an XML attribute (every non-resource type)
        self.attr_url = attr_url  # ``url`` is an XML attribute (Extension)
        self.elements = elements  # XML element name -> element
        self.keys = keys  # JSON key (``name`` and ``_name``) -> element


_BY_CLASS: dict[Any, _TypeInfo] = {}
_BY_RESOURCE: dict[str, _TypeInfo] = {}
_ORDER = attrgetter("order")


def _model_class_in(annotation: Any) -> Any:
    """The fhir.resources model class referenced by a field annotation, if any."""
    if isinstance(annotation, type):
        get_model = getattr(annotation, "get_model_klass", None)
        if get_model is not None:
            return get_model()
    for arg in getattr(annotation, "__args__", ()):
        found = _model_class_in(arg)
        if found is not None:
            return found
    return None


def _resource_base() -> Any:
    from fhir.resources.R4B.resource import Resource

    return Resource


def _build_info(model: Any) -> _TypeInfo:
    from fhir_core.utils import get_fhir_type_name, is_list_type

    resource_base = _resource_base()
    is_resource = issubclass(model, resource_base)
    type_name: str = model.get_resource_type()
    fields = {(f.alias or n): f for n, f in model.model_fields.items()}
    elements: dict[str, _Elem] = {}
    keys: dict[str, _Elem] = {}
    attr_id = attr_url = False
    for order, name in enumerate(model.elements_sequence()):
        if name == "id" and not is_resource:
            attr_id = True
            continue
        if name == "url" and type_name == "Extension":
            attr_url = True
            continue
        field = fields[name]
        target = _model_class_in(field.annotation)
        if target is not None:
            kind = _RESOURCE if issubclass(target, resource_base) else _COMPLEX
            jtype = _J_STRING
        else:
            fhir_type = get_fhir_type_name(field)
            kind = _XHTML if fhir_type == "xhtml" else _PRIMITIVE
            jtype = _JSON_TYPE_OF.get(fhir_type, _J_STRING)
        elem = _Elem(name, order, bool(is_list_type(field)), kind, jtype, target)
        elements[name] = elem
        keys[name] = elem
        if kind == _PRIMITIVE:
            keys["_" + name] = elem
    return _TypeInfo(type_name, is_resource, attr_id, attr_url, elements, keys)


def _info(model: Any) -> _TypeInfo:
    info = _BY_CLASS.get(model)
    if info is None:
        info = _BY_CLASS[model] = _build_info(model)
    return info


_ELEMENT_INFO: _TypeInfo | None = None


def _element_info() -> _TypeInfo:
    """Metadata of ``Element``: what a primitive's ``_name`` object may hold."""
    global _ELEMENT_INFO
    if _ELEMENT_INFO is None:
        from fhir.resources.R4B.element import Element

        _ELEMENT_INFO = _info(Element)
    return _ELEMENT_INFO


def _resource_info(name: str) -> _TypeInfo | None:
    """Metadata of a concrete resource type, or None if ``name`` is not one."""
    info = _BY_RESOURCE.get(name)
    if info is not None:
        return info
    if _RESOURCE_NAME.fullmatch(name) is None or name in ("Resource", "DomainResource"):
        return None
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(name)
    except Exception:
        return None
    if not issubclass(model, _resource_base()) or model.get_resource_type() != name:
        return None
    info = _BY_RESOURCE[name] = _info(model)
    return info


# --------------------------------------------------------------------------- #
# Hardened parsing
# --------------------------------------------------------------------------- #


class _RefuseResolver(etree.Resolver):  # type: ignore[misc]
    """Answers every external load (DTD, entity, XInclude) with nothing."""

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        return self.resolve_empty(context)


class _ParserHolder(threading.local):
    parser: Any = None


_PARSERS = _ParserHolder()


def _parser() -> Any:
    """A hardened lxml parser; one per thread (lxml parsers are not thread-safe)."""
    parser = _PARSERS.parser
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            attribute_defaults=False,
            # NB: never pass collect_ids=False: it makes libxml2 load the external DTD subset.
            remove_comments=True,
            remove_pis=False,
        )
        parser.resolvers.add(_RefuseResolver())
        _PARSERS.parser = parser
    return parser


def _parse_document(data: bytes, what: str) -> Any:
    """Parse ``data`` safely and return its root element (raises XmlFormatError)."""
    for marker in _FORBIDDEN_MARKUP:
        if marker in data:
            raise XmlFormatError(f"{what}: DOCTYPE and entity declarations are not allowed")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlFormatError(f"{what}: malformed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if (
        docinfo.doctype
        or docinfo.internalDTD is not None
        or docinfo.externalDTD is not None
        or docinfo.system_url
        or docinfo.public_id
    ):
        raise XmlFormatError(f"{what}: DOCTYPE declarations are not allowed")
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        _reject_node(sibling)
    return root


def _line(el: Any) -> str:
    line = el.sourceline
    return f" (line {line})" if line else ""


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _reject_node(node: Any) -> None:
    """Refuse a non-element node (comments are dropped by the parser anyway)."""
    tag = node.tag
    if tag is etree.Comment:
        return
    if tag is etree.ProcessingInstruction:
        raise XmlFormatError(f"processing instructions are not allowed{_line(node)}")
    if tag is etree.Entity:
        raise XmlFormatError(f"entity references are not allowed{_line(node)}")
    raise XmlFormatError(f"unexpected XML node {node!r}{_line(node)}")


def _check_text(text: str | None, el: Any) -> None:
    if text is not None and not text.isspace():
        raise XmlFormatError(f"text content is not allowed in FHIR element <{_local(el.tag)}>{_line(el)}")


def _convert(raw: str, jtype: int) -> Any:
    """XML ``value`` attribute -> JSON value; unconvertible text stays a string
    so that validation reports it."""
    if jtype == _J_STRING:
        return raw
    if jtype == _J_BOOLEAN:
        if raw == "true":
            return True
        if raw == "false":
            return False
        return raw
    if jtype == _J_INTEGER:
        return int(raw) if _INTEGER.fullmatch(raw) else raw
    match = _DECIMAL.fullmatch(raw)
    if match is None:
        return raw
    if match.group(1) is None and match.group(2) is None:
        return int(raw)
    number = float(raw)
    return number if math.isfinite(number) else raw


def _put(out: dict[str, Any], key: str, value: Any, repeats: bool) -> None:
    if repeats:
        existing = out.get(key)
        if existing is None:
            out[key] = [value]
        else:
            existing.append(value)
    elif key in out:
        # A non-repeating element given twice: keep both so validation reports it.
        previous = out[key]
        if isinstance(previous, list):
            previous.append(value)
        else:
            out[key] = [previous, value]
    else:
        out[key] = value


def _read_attributes(el: Any, info: _TypeInfo, out: dict[str, Any]) -> None:
    for key, value in el.items():
        if key == "id" and info.attr_id:
            out["id"] = value
        elif key == "url" and info.attr_url:
            out["url"] = value
        elif not key.startswith(_XSI):
            raise XmlFormatError(f"attribute {_local(key)!r} is not allowed on <{_local(el.tag)}>{_line(el)}")


def _read_children(el: Any, info: _TypeInfo, out: dict[str, Any]) -> None:
    _check_text(el.text, el)
    elements = info.elements
    lists: dict[str, tuple[list[Any], list[Any]]] | None = None
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            _reject_node(child)
            continue
        tail = child.tail
        if tail is not None and not tail.isspace():
            _check_text(tail, el)
        if not tag.startswith(_F):
            div = elements.get("div")
            if tag == _XHTML_DIV and div is not None and div.kind == _XHTML:
                _put(out, "div", _xhtml_string(child), False)
                continue
            raise XmlFormatError(f"element <{_local(tag)}> is not in the FHIR namespace{_line(child)}")
        name = tag[_F_LEN:]
        elem = elements.get(name)
        if elem is None:
            # Unknown element: keep it so validation reports it with its JSON path.
            _put(out, name, _read_generic(child), False)
            continue
        kind = elem.kind
        if kind == _PRIMITIVE:
            value, ext = _read_primitive(child, elem.jtype)
            if elem.repeats:
                if lists is None:
                    lists = {}
                pair = lists.get(name)
                if pair is None:
                    pair = lists[name] = ([], [])
                pair[0].append(value)
                pair[1].append(ext)
            else:
                if value is not None:
                    _put(out, name, value, False)
                if ext is not None:
                    _put(out, "_" + name, ext, False)
        elif kind == _COMPLEX:
            sub: dict[str, Any] = {}
            sub_info = _info(elem.model)
            if len(child.attrib):
                _read_attributes(child, sub_info, sub)
            _read_children(child, sub_info, sub)
            _put(out, name, sub, elem.repeats)
        elif kind == _RESOURCE:
            _put(out, name, _read_wrapped_resource(child), elem.repeats)
        else:
            raise XmlFormatError(f"narrative <div> must be in the XHTML namespace {XHTML_NS}{_line(child)}")
    if lists:
        for name, (values, exts) in lists.items():
            for value in values:
                if value is not None:
                    out[name] = values
                    break
            for ext in exts:
                if ext is not None:
                    out["_" + name] = exts
                    break


def _read_primitive(el: Any, jtype: int) -> tuple[Any, dict[str, Any] | None]:
    raw: str | None = None
    ext: dict[str, Any] | None = None
    for key, value in el.items():
        if key == "value":
            raw = value
        elif key == "id":
            ext = {"id": value}
        elif not key.startswith(_XSI):
            raise XmlFormatError(f"attribute {_local(key)!r} is not allowed on <{_local(el.tag)}>{_line(el)}")
    if len(el):
        if ext is None:
            ext = {}
        _read_children(el, _ELEMENT_INFO or _element_info(), ext)
        if not ext:
            ext = None
    else:
        _check_text(el.text, el)
    return (None if raw is None else _convert(raw, jtype)), ext


def _read_wrapped_resource(wrapper: Any) -> dict[str, Any]:
    for key in wrapper.attrib:
        if not key.startswith(_XSI):
            raise XmlFormatError(
                f"attribute {_local(key)!r} is not allowed on <{_local(wrapper.tag)}>{_line(wrapper)}"
            )
    _check_text(wrapper.text, wrapper)
    found: Any = None
    count = 0
    for child in wrapper:
        if not isinstance(child.tag, str):
            _reject_node(child)
            continue
        _check_text(child.tail, wrapper)
        found = child
        count += 1
    if count != 1:
        raise XmlFormatError(f"<{_local(wrapper.tag)}> must contain exactly one resource{_line(wrapper)}")
    return _read_resource(found)


def _read_resource(el: Any) -> dict[str, Any]:
    tag = el.tag
    if not tag.startswith(_F):
        raise XmlFormatError(
            f"resource element <{_local(tag)}> is not in the FHIR namespace {FHIR_NS}{_line(el)}"
        )
    name = tag[_F_LEN:]
    info = _resource_info(name)
    if info is None:
        raise XmlFormatError(f"unknown resource type {name!r}{_line(el)}")
    out: dict[str, Any] = {"resourceType": name}
    _read_attributes(el, info, out)
    _read_children(el, info, out)
    return out


def _read_generic(el: Any) -> Any:
    """An element the model does not know, converted without metadata."""
    obj: dict[str, Any] = {}
    for key, value in el.items():
        if not key.startswith(_XSI):
            obj[_local(key)] = value
    _check_text(el.text, el)
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            _reject_node(child)
            continue
        _check_text(child.tail, el)
        if not tag.startswith(_F):
            raise XmlFormatError(f"element <{_local(tag)}> is not in the FHIR namespace{_line(child)}")
        _put(obj, tag[_F_LEN:], _read_generic(child), False)
    if list(obj) == ["value"]:
        return obj["value"]
    return obj


def _copy_xhtml(src: Any, parent: Any, adopt: bool) -> Any:
    """Rebuild an XHTML subtree with XHTML as the default namespace.

    ``adopt`` moves un-namespaced elements into XHTML (render side only).
    """
    tag = src.tag
    if not tag.startswith(_X):
        if adopt and not tag.startswith("{"):
            tag = _X + tag
        else:
            raise XmlFormatError(f"element <{_local(tag)}> in the narrative is not XHTML{_line(src)}")
    el = etree.Element(tag, nsmap=_XHTML_NSMAP) if parent is None else etree.SubElement(parent, tag)
    for key, value in src.items():
        el.set(key, value)
    el.text = src.text
    for child in src:
        if not isinstance(child.tag, str):
            _reject_node(child)
            continue
        _copy_xhtml(child, el, adopt).tail = child.tail
    return el


def _xhtml_string_of(div: Any) -> str:
    result: str = etree.tostring(div, encoding="unicode")
    return result


def _xhtml_string(div: Any) -> str:
    return _xhtml_string_of(_copy_xhtml(div, None, False))


def parse_fhir_xml(body: bytes, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Convert a FHIR XML resource into its FHIR JSON object (R4 JSON rules).

    The resource is not validated: unknown elements are carried over, values that
    do not fit their primitive type stay strings.  Raises :class:`XmlFormatError`
    for a body over ``max_bytes``, malformed XML, DOCTYPE/entities/processing
    instructions, elements outside the FHIR namespace (XHTML narrative aside) and
    unknown resource types.
    """
    if max_bytes is not None and len(body) > max_bytes:
        raise XmlFormatError(f"XML body of {len(body)} bytes exceeds the limit of {max_bytes}")
    root = _parse_document(bytes(body), "request body")
    tag = root.tag
    if not tag.startswith(_F):
        raise XmlFormatError(f"root element <{_local(tag)}> is not in the FHIR namespace {FHIR_NS}")
    try:
        return _read_resource(root)
    except RecursionError:
        raise XmlFormatError("XML document is nested too deeply") from None


# --------------------------------------------------------------------------- #
# Rendering
# --------------------------------------------------------------------------- #


def _format_value(value: Any, path: str) -> str:
    kind = type(value)
    if kind is str:
        result: str = value
        return result
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value!r} is not a FHIR decimal")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{path}: {value!r} is not a FHIR decimal")
        return str(value)
    if isinstance(value, str):
        return str(value)
    raise ValueError(f"{path}: expected a primitive value, got {type(value).__name__}")


_ATTR_SPECIAL = re.compile(r'[&<>"\n\r\t]')
# Characters XML 1.0 cannot carry at all (checked once on the whole rendered document).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(value: str) -> str:
    """Escape an attribute value; newlines and tabs survive attribute normalisation."""
    if _ATTR_SPECIAL.search(value) is None:
        return value
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _attribute(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected a string, got {type(value).__name__}")
    return _escape(value)


def _render_resource(out: list[str], obj: Any, path: str, indent: str | None, root: bool) -> None:
    if type(obj) is not dict:
        raise ValueError(f"{path}: expected a resource object")
    resource_type = obj.get("resourceType")
    if not isinstance(resource_type, str):
        raise ValueError(f"{path or 'resource'}: resource without resourceType")
    info = _resource_info(resource_type)
    if info is None:
        raise ValueError(f"{path or 'resource'}: unknown resource type {resource_type!r}")
    extra = f' xmlns="{FHIR_NS}"' if root else ""
    _render_object(out, resource_type, obj, info, path or resource_type, indent, extra)


def _render_object(
    out: list[str], tag: str, obj: Any, info: _TypeInfo, path: str, indent: str | None, extra: str
) -> None:
    """Write ``<tag ...>children</tag>`` for a JSON object of FHIR type ``info``.

    ``indent`` is None for compact output, else the newline + indentation of this element.
    ``extra`` holds attributes written after ``id`` / ``url`` (a primitive's ``value``).
    """
    if type(obj) is not dict:
        raise ValueError(f"{path}: expected an object, got {type(obj).__name__}")
    keys = info.keys
    todo: list[_Elem] = []
    attrs = ""
    for key, value in obj.items():
        elem = keys.get(key)
        if elem is not None:
            todo.append(elem)
        elif key == "resourceType" and info.is_resource:
            continue
        elif key == "id" and info.attr_id:
            attrs = f' id="{_attribute(value, f"{path}.id")}"{attrs}'
        elif key == "url" and info.attr_url:
            attrs += f' url="{_attribute(value, f"{path}.url")}"'
        else:
            raise ValueError(f"{path}: unknown element {key!r} for {info.name}")
    if indent is not None:
        out.append(indent)
    out.append(f"<{tag}{attrs}{extra}")
    mark = len(out)
    out.append(">")
    if len(todo) > 1:
        todo.sort(key=_ORDER)
    inner = None if indent is None else indent + "  "
    previous: _Elem | None = None
    for elem in todo:
        if elem is previous:  # ``name`` and ``_name`` of one primitive
            continue
        previous = elem
        name = elem.name
        kind = elem.kind
        if kind == _PRIMITIVE:
            if elem.repeats:
                _render_primitive_list(out, elem, obj.get(name), obj.get("_" + name), path, inner)
            else:
                _render_primitive(out, name, obj.get(name), obj.get("_" + name), f"{path}.{name}", inner)
            continue
        value = obj[name]
        if value is None:
            continue
        if kind == _XHTML:
            if inner is not None:
                out.append(inner)
            out.append(_narrative_div(value, f"{path}.{name}"))
            continue
        if elem.repeats:
            if type(value) is not list:
                raise ValueError(f"{path}.{name}: expected an array")
            items: list[Any] = value
        else:
            if type(value) is list:
                raise ValueError(f"{path}.{name}: expected a single value, got an array")
            items = [value]
        if kind == _COMPLEX:
            sub_info = _info(elem.model)
            for index, item in enumerate(items):
                item_path = f"{path}.{name}[{index}]" if elem.repeats else f"{path}.{name}"
                _render_object(out, name, item, sub_info, item_path, inner, "")
        else:
            deeper = None if inner is None else inner + "  "
            for index, item in enumerate(items):
                item_path = f"{path}.{name}[{index}]" if elem.repeats else f"{path}.{name}"
                if inner is not None:
                    out.append(inner)
                out.append(f"<{name}>")
                _render_resource(out, item, item_path, deeper, False)
                if inner is not None:
                    out.append(inner)
                out.append(f"</{name}>")
    if len(out) == mark + 1:
        out[mark] = "/>"
    else:
        if indent is not None:
            out.append(indent)
        out.append(f"</{tag}>")


def _render_primitive(out: list[str], name: str, value: Any, ext: Any, path: str, indent: str | None) -> None:
    if value is None:
        if ext is None:
            return
        value_attr = ""
    else:
        value_attr = f' value="{_escape(_format_value(value, path))}"'
    if ext is None:
        if indent is not None:
            out.append(indent)
        out.append(f"<{name}{value_attr}/>")
    else:
        _render_object(out, name, ext, _ELEMENT_INFO or _element_info(), "_" + path, indent, value_attr)


def _render_primitive_list(
    out: list[str], elem: _Elem, values: Any, exts: Any, path: str, indent: str | None
) -> None:
    name = elem.name
    if values is None:
        values = ()
    elif type(values) is not list:
        raise ValueError(f"{path}.{name}: expected an array")
    if exts is None:
        exts = ()
    elif type(exts) is not list:
        raise ValueError(f"{path}._{name}: expected an array")
    count_values = len(values)
    count_exts = len(exts)
    for index in range(max(count_values, count_exts)):
        _render_primitive(
            out,
            name,
            values[index] if index < count_values else None,
            exts[index] if index < count_exts else None,
            f"{path}.{name}[{index}]",
            indent,
        )


def _narrative_div(value: Any, path: str) -> str:
    """The narrative re-serialised after a safe parse (XHTML default namespace)."""
    if not isinstance(value, str):
        raise ValueError(f"{path}: the narrative div must be a string")
    try:
        root = _parse_document(value.encode("utf-8"), path)
        if root.tag not in (_XHTML_DIV, "div"):
            raise XmlFormatError(f"{path}: the narrative must be an XHTML <div>")
        return _xhtml_string_of(_copy_xhtml(root, None, True))
    except XmlFormatError as exc:
        raise ValueError(str(exc)) from None


def render_fhir_xml(resource: dict[str, Any], *, pretty: bool = False) -> bytes:
    """Convert a FHIR JSON resource (possibly partial) into FHIR XML bytes.

    Elements are written in FHIR order, whatever the key order of ``resource``.
    The input is never validated against the model, so ``_elements`` / ``_summary``
    subsets render fine.  Raises ValueError for keys the FHIR type does not define,
    unknown resource types, values of the wrong JSON shape, characters XML cannot
    carry and a narrative div that is not well-formed XHTML.
    """
    out: list[str] = []
    try:
        _render_resource(out, resource, "", "\n" if pretty else None, True)
    except RecursionError:
        raise ValueError("resource is nested too deeply") from None
    if pretty:
        out[0] = ""  # no blank line after the XML declaration
        out.append("\n")
    text = "".join(out)
    bad = _NOT_XML_CHAR.search(text)
    if bad is not None:
        raise ValueError(f"character U+{ord(bad.group()):04X} cannot be represented in XML")
    return _XML_DECLARATION + text.encode("utf-8")
