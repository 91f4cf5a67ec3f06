"""Polly's rest-json wire protocol, driven by the botocore service model.

The installed botocore's ``polly/service-2`` model gives the routes (method and URI
template), where each input member lives (URI, query string, header or JSON body), the
constraints to enforce (required, type, enum, min/max, pattern: botocore checks only
required, type and min on the client side) and the modeled errors with their HTTP
status codes. Everything here is pure: requests in, dicts or ``PollyError`` out.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol, TypedDict, cast

import botocore.loaders
import botocore.model

# botocore ships no types: the part of its service model read here, as Protocols.


class ErrorMetadata(TypedDict, total=False):
    httpStatusCode: int


class ShapeMetadata(TypedDict, total=False):
    """The constraints of a shape that are enforced here, and its error status."""

    enum: list[str]
    min: float
    max: float
    pattern: str
    error: ErrorMetadata


class Shape(Protocol):
    @property
    def type_name(self) -> str: ...
    @property
    def metadata(self) -> ShapeMetadata: ...
    @property
    def serialization(self) -> Mapping[str, str]: ...


class StructureShape(Shape, Protocol):
    @property
    def members(self) -> Mapping[str, Shape]: ...
    @property
    def required_members(self) -> list[str]: ...


class ListShape(Shape, Protocol):
    @property
    def member(self) -> Shape: ...


class MapShape(Shape, Protocol):
    @property
    def key(self) -> Shape: ...
    @property
    def value(self) -> Shape: ...


class OperationModel(Protocol):
    @property
    def http(self) -> Mapping[str, str]: ...
    @property
    def input_shape(self) -> StructureShape | None: ...
    @property
    def output_shape(self) -> StructureShape | None: ...


class ServiceModel(Protocol):
    @property
    def operation_names(self) -> list[str]: ...
    def operation_model(self, operation_name: str) -> OperationModel: ...
    def shape_for(self, shape_name: str) -> Shape: ...


class PollyError(Exception):
    """An error answered on the wire: ``x-amzn-ErrorType: code``, body ``{"message": ...}``
    (plus any modeled extra members), with the status code the model gives the shape."""

    def __init__(self, code: str, message: str, *, status: int | None = None, **extra: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else error_status(code)
        if code == "ValidationException":
            extra.setdefault("reason", "other")  # a required member of the shape
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


@cache
def service_model() -> ServiceModel:
    raw = botocore.loaders.Loader().load_service_model("polly", "service-2")
    model: ServiceModel = botocore.model.ServiceModel(raw, service_name="polly")
    return model


def error_status(code: str) -> int:
    """HTTP status of a modeled error shape; 400 for unmodeled client errors."""
    try:
        shape = service_model().shape_for(code)
    except botocore.model.NoShapeFoundError:
        return 400
    return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


# --- routing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern[str]


@cache
def routes() -> tuple[Route, ...]:
    out = []
    model = service_model()
    for name in model.operation_names:
        op = model.operation_model(name)
        uri = op.http["requestUri"].split("?")[0]
        regex = re.sub(r"\\\{(\w+)\+?\\\}", r"(?P<\1>[^/]+)", re.escape(uri))
        out.append(Route(name, op.http["method"], re.compile(f"^{regex}/?$")))
    # Literal routes first so that /v1/synthesisTasks is not taken for a template.
    out.sort(key=lambda r: r.pattern.pattern.count("(?P"))
    return tuple(out)


def route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """(operation name, URI labels) for a request line, or None."""
    for r in routes():
        if r.method != method:
            continue
        m = r.pattern.match(path)
        if m:
            return r.operation, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
    return None


# --- request parsing ----------------------------------------------------------------------


def _coerce(shape: Shape, raw: str, name: str) -> Any:
    """A URI/query/header string as the member's type."""
    if shape.type_name in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            raise PollyError(
                "SerializationException", f"Cannot convert '{raw}' to an integer for {name}"
            ) from None
    if shape.type_name == "boolean":
        if raw.lower() not in ("true", "false"):
            raise PollyError(
                "SerializationException", f"Cannot convert '{raw}' to a boolean for {name}"
            )
        return raw.lower() == "true"
    return raw


def parse_request(
    operation: str, labels: Mapping[str, str], query: str, headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """The input parameters of ``operation`` from the pieces of an HTTP request."""
    op = service_model().operation_model(operation)
    shape = op.input_shape
    params: dict[str, Any] = {}
    if shape is None:
        return params
    qs = urllib.parse.parse_qs(query, keep_blank_values=True)
    lower_headers = {k.lower(): v for k, v in headers.items()}
    body_members = []
    for name, member in shape.members.items():
        loc = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if loc == "uri":
            if wire in labels:
                params[name] = _coerce(member, labels[wire], name)
        elif loc == "querystring":
            if wire in qs:
                if member.type_name == "list":
                    params[name] = qs[wire]
                else:
                    params[name] = _coerce(member, qs[wire][0], name)
        elif loc == "header":
            if wire.lower() in lower_headers:
                params[name] = _coerce(member, lower_headers[wire.lower()], name)
        else:
            body_members.append(name)
    if body_members and body.strip():
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise PollyError("SerializationException", "Malformed JSON in request body") from None
        if not isinstance(doc, dict):
            raise PollyError("SerializationException", "Request body must be a JSON object")
        for name in body_members:
            if name in doc and doc[name] is not None:
                params[name] = doc[name]
    return params


# --- validation ----------------------------------------------------------------------------


@dataclass
class Violation:
    path: str  # Coral style: "voiceId", "lexiconNames.1.member"
    member: str  # top-level member name as in the model ("VoiceId")
    message: str  # "failed to satisfy constraint: ..." or a type problem
    value: Any = None
    is_type: bool = False


def _lc(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return f"'{value}'"


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (int, float, str),
    "blob": (str, bytes),
    "list": (list,),
    "map": (dict,),
    "structure": (dict,),
}


def _check(shape: Shape, value: object, path: str, top: str, out: list[Violation]) -> None:
    tname = shape.type_name
    ok = _PY_TYPES.get(tname, (object,))
    if not isinstance(value, ok) or (tname in ("integer", "long") and isinstance(value, bool)):
        out.append(Violation(path, top, f"Expected {tname} for {path}", value, is_type=True))
        return
    meta = shape.metadata
    # the isinstance tests below only narrow for the type checker: `ok` has checked them
    if tname == "string" and isinstance(value, str):
        if "enum" in meta and value not in meta["enum"]:
            out.append(
                Violation(
                    path,
                    top,
                    "Member must satisfy enum value set: [" + ", ".join(meta["enum"]) + "]",
                    value,
                )
            )
        if "min" in meta and len(value) < meta["min"]:
            out.append(
                Violation(
                    path,
                    top,
                    f"Member must have length greater than or equal to {meta['min']}",
                    value,
                )
            )
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                Violation(
                    path, top, f"Member must have length less than or equal to {meta['max']}", value
                )
            )
        if "pattern" in meta and not re.search(meta["pattern"], value):
            out.append(
                Violation(
                    path,
                    top,
                    "Member must satisfy regular expression pattern: " + meta["pattern"],
                    value,
                )
            )
    elif tname in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        if "min" in meta and value < meta["min"]:
            out.append(
                Violation(
                    path,
                    top,
                    f"Member must have value greater than or equal to {meta['min']}",
                    value,
                )
            )
        if "max" in meta and value > meta["max"]:
            out.append(
                Violation(
                    path, top, f"Member must have value less than or equal to {meta['max']}", value
                )
            )
    elif tname in ("list", "map") and isinstance(value, (list, dict)):
        if "min" in meta and len(value) < meta["min"]:
            out.append(
                Violation(
                    path,
                    top,
                    f"Member must have length greater than or equal to {meta['min']}",
                    value,
                )
            )
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                Violation(
                    path, top, f"Member must have length less than or equal to {meta['max']}", value
                )
            )
        if isinstance(value, list):
            item_shape = cast(ListShape, shape).member
            for i, item in enumerate(value, 1):
                _check(item_shape, item, f"{path}.{i}.member", top, out)
        else:
            map_shape = cast(MapShape, shape)
            for k, v in value.items():
                _check(map_shape.key, k, f"{path}.key", top, out)
                _check(map_shape.value, v, f"{path}.value", top, out)
    elif tname == "structure" and isinstance(value, dict):
        struct = cast(StructureShape, shape)
        members = struct.members
        for req in struct.required_members:
            if value.get(req) is None:
                out.append(
                    Violation(
                        f"{path}.{_lc(req)}" if path else _lc(req),
                        top or req,
                        "Member must not be null",
                        None,
                    )
                )
        for name, v in value.items():
            if name in members and v is not None:
                sub = f"{path}.{_lc(name)}" if path else _lc(name)
                _check(members[name], v, sub, top or name, out)


def violations(operation: str, params: Mapping[str, Any]) -> list[Violation]:
    """Every constraint of the input shape that ``params`` breaks."""
    shape = service_model().operation_model(operation).input_shape
    out: list[Violation] = []
    if shape is not None:
        _check(shape, dict(params), "", "", out)
    return out


# A pattern violation of these members gets its own modeled error [M shape docs], the
# rest a ValidationException (UNVERIFIED: none of these operations model one).
_SPECIFIC: dict[str, tuple[str, str]] = {
    "OutputS3BucketName": (
        "InvalidS3BucketException",
        (
            "The provided Amazon S3 bucket name is invalid. Please check your "
            "input with S3 bucket naming requirements and try again."
        ),
    ),
    "OutputS3KeyPrefix": (
        "InvalidS3KeyException",
        "The provided Amazon S3 key prefix is invalid. Please provide a valid S3 object key name.",
    ),
    "SnsTopicArn": (
        "InvalidSnsTopicArnException",
        (
            "The provided SNS topic ARN is invalid. Please provide a valid SNS "
            "topic ARN and try again."
        ),
    ),
    "TaskId": (
        "InvalidTaskIdException",
        "The provided Task ID is not valid. Please provide a valid Task ID and try again.",
    ),
    "NextToken": (
        "InvalidNextTokenException",
        "The NextToken is invalid. Verify that it's spelled correctly, and then try again.",
    ),
}


def validate(operation: str, params: Mapping[str, Any]) -> None:
    """Raise the error Polly gives for the first broken constraint (see _SPECIFIC)."""
    found = violations(operation, params)
    if not found:
        return
    types = [v for v in found if v.is_type]
    if types:
        raise PollyError("SerializationException", types[0].message)
    for v in found:
        if v.member in _SPECIFIC and v.value is not None:
            code, msg = _SPECIFIC[v.member]
            raise PollyError(code, msg)
    n = len(found)
    parts = [
        f"Value {_show(v.value)} at '{v.path}' failed to satisfy constraint: {v.message}"
        for v in found
    ]
    noun = "validation error" if n == 1 else "validation errors"
    raise PollyError(
        "ValidationException",
        f"{n} {noun} detected: " + "; ".join(parts),
        reason="fieldValidationFailed",
        fields=[{"name": v.path, "message": v.message} for v in found],
    )


# --- response serialization -------------------------------------------------------------


def _out(shape: Shape, value: Any) -> Any:
    t = shape.type_name
    if t == "structure":
        res = {}
        for name, member in cast(StructureShape, shape).members.items():
            if member.serialization.get("location"):
                continue
            if name in value and value[name] is not None:
                res[member.serialization.get("name", name)] = _out(member, value[name])
        return res
    if t == "list":
        item_shape = cast(ListShape, shape).member
        return [_out(item_shape, v) for v in value]
    if t == "map":
        value_shape = cast(MapShape, shape).value
        return {k: _out(value_shape, v) for k, v in value.items()}
    if t == "timestamp":
        return round(float(value), 3)  # epoch seconds, as Polly sends them
    return value


def serialize_output(operation: str, result: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """(headers, JSON body) for an operation's output; header members go to headers."""
    shape = service_model().operation_model(operation).output_shape
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if shape is None:
        return headers, b"{}"
    for name, member in shape.members.items():
        if member.serialization.get("location") == "header" and result.get(name) is not None:
            headers[member.serialization["name"]] = str(result[name])
    return headers, json.dumps(_out(shape, result)).encode()


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def error_response(err: PollyError, request_id: str) -> Response:
    return Response(
        err.status,
        {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": f"{err.code}:http://internal.amazon.com/coral/com.amazonaws.polly.v1/",
            "x-amzn-RequestId": request_id,
        },
        json.dumps(err.body()).encode(),
    )
