"""What Stripe accepts: request validation for the Stripe stand-in, and response shapes.

Requests are checked against the installed `stripe` package's request types (TypedDicts generated from
the spec of the SDK's pinned API version, e.g. `stripe.params.checkout.SessionCreateParams`): unknown or
misspelt parameters, missing required ones, integers, booleans, enum values, arrays and hashes. On top
of the types come the limits Stripe documents outside its spec (metadata: 50 keys, 40-character keys,
500-character values; Checkout's minimum charge per currency) and a few cross-field rules Stripe
enforces (a price needs `product` or `product_data`; a refund needs `payment_intent` or `charge`).
Every failure is raised as a ContractError carrying Stripe's 400 error shape.

Response objects are built from Stripe's own example objects (fixtures3), restricted to the spec's
top-level properties, nullable fields null (`stripe_shapes.json`, derived from shared/reference/stripe).
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

import typing_extensions

METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_CHARS = 40
METADATA_MAX_VALUE_CHARS = 500
CHECKOUT_MAX_AMOUNT = 99_999_999
MAX_EVENT_TYPES = 20

# Stripe's "Minimum and maximum charge amounts" (docs.stripe.com/currencies),
# in the smallest unit as the API takes it (JPY is zero-decimal; HUF is sent with two decimals).
# Other currencies: the equivalent of USD 0.50, which Stripe converts itself; the stand-in uses 50.
# Deliberately its own copy, not services.core.checkout_limits: the stand-in plays Stripe, so a wrong
# table on our side must meet Stripe's table here and fail a test.
CHECKOUT_MINIMUMS = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}
ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}

SHAPES = Path(__file__).with_name("stripe_shapes.json")
_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?\d+(\.\d+)?")


class ContractError(Exception):
    """A request Stripe would refuse: status and Stripe's JSON error document."""

    def __init__(self, message: str, *, param: str | None, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {"type": "invalid_request_error", "code": code, "param": param, "message": message}
        }


# --- the SDK's request types as small schemas ----------------------------------------------------------


def _request_option_keys() -> set[str]:
    from stripe._request_options import RequestOptions

    return set(RequestOptions.__annotations__)


def _resolve(tp: Any, module: str) -> Any:
    if isinstance(tp, typing.ForwardRef):
        tp = tp.__forward_arg__
    if isinstance(tp, str):
        tp = eval(tp, dict(vars(sys.modules[module])))  # noqa: S307 - the SDK's own annotations
    return tp


def _schema(tp: Any, module: str) -> tuple[Any, ...]:
    tp = _resolve(tp, module)
    origin = typing_extensions.get_origin(tp)
    args = typing_extensions.get_args(tp)
    if origin in (typing_extensions.NotRequired, typing_extensions.Required):
        return _schema(args[0], module)
    if typing_extensions.is_typeddict(tp):
        return ("object", tp)
    if origin in (typing.Union, types.UnionType):
        return ("union", tuple(_schema(a, module) for a in args))
    if origin is typing.Literal:
        return ("literal", frozenset(args))
    if origin is list:
        return ("array", _schema(args[0], module))
    if origin is dict:
        return ("hash", _schema(args[1], module))
    if tp is int:
        return ("integer",)
    if tp is float:
        return ("number",)
    if tp is bool:
        return ("boolean",)
    if tp is str:
        return ("string",)
    return ("any",)  # UntypedStripeObject and the like: a hash of anything


@cache
def _fields(cls: type) -> dict[str, tuple[bool, tuple[Any, ...]]]:
    """name -> (required, schema) of a request TypedDict, without the SDK's request options."""
    skip = _request_option_keys()
    required = getattr(cls, "__required_keys__", frozenset())
    out: dict[str, tuple[bool, tuple[Any, ...]]] = {}
    for klass in reversed(cls.__mro__):
        for name, ann in vars(klass).get("__annotations__", {}).items():
            if name in skip:
                continue
            out[name] = (name in required, _schema(ann, klass.__module__))
    return out


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return "hash"
    if isinstance(value, list):
        return "array"
    return "scalar"


_SHAPES = {"object": "hash", "hash": "hash", "any": "hash", "array": "array"}


def _check(value: Any, schema: tuple[Any, ...], param: str) -> None:
    kind = schema[0]
    if kind == "union":
        options = schema[1]
        literals = frozenset().union(*(o[1] for o in options if o[0] == "literal"))
        if value == "" and "" in literals:
            return
        # An SDK enum is `Literal[...] | str` for forward compatibility; the API itself checks the value.
        named = literals - {""}
        if named and isinstance(value, str) and any(o[0] == "string" for o in options):
            if value not in named:
                raise _enum_error(param, value, named)
            return
        same = [o for o in options if _SHAPES.get(o[0], "scalar") == _shape(value) and o[0] != "literal"]
        if named and isinstance(value, str):
            same = [("literal", named), *same]
        if not same:
            raise _type_error(param, value, options[0])
        errors: list[ContractError] = []
        for option in same:
            try:
                _check(value, option, param)
                return
            except ContractError as exc:
                errors.append(exc)
        raise errors[0]
    if kind == "literal":
        if value not in schema[1]:
            raise _enum_error(param, value, schema[1])
        return
    if kind == "object":
        if not isinstance(value, dict):
            raise _type_error(param, value, schema)
        _check_object(value, schema[1], param)
        return
    if kind == "hash":
        if not isinstance(value, dict):
            raise _type_error(param, value, schema)
        for key, item in value.items():
            _check(item, schema[1], f"{param}[{key}]")
        return
    if kind == "any":
        if not isinstance(value, dict | str):
            raise _type_error(param, value, schema)
        return
    if kind == "array":
        if not isinstance(value, list):
            raise _type_error(param, value, schema)
        for i, item in enumerate(value):
            _check(item, schema[1], f"{param}[{i}]")
        return
    if not isinstance(value, str):
        raise _type_error(param, value, schema)
    if kind == "integer" and not _INT.fullmatch(value):
        raise ContractError(f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")
    if kind == "number" and not _FLOAT.fullmatch(value):
        raise ContractError(f"Invalid decimal: {value}", param=param, code="parameter_invalid_integer")
    if kind == "boolean" and value not in ("true", "false"):
        raise ContractError(f"Invalid boolean: {value}", param=param, code="parameter_invalid_string_blank")


def _check_object(value: dict[str, Any], cls: type, prefix: str) -> None:
    fields = _fields(cls)
    for key in value:
        if key not in fields:
            name = f"{prefix}[{key}]" if prefix else key
            raise ContractError(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")
    for key, (required, schema) in fields.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key not in value:
            if required:
                raise ContractError(f"Missing required param: {name}.", param=name, code="parameter_missing")
            continue
        _check(value[key], schema, name)
        if key == "metadata" and isinstance(value[key], dict):
            check_metadata(value[key], name)


def _enum_error(param: str, value: Any, allowed: frozenset[Any]) -> ContractError:
    choices = sorted(str(a) for a in allowed if a != "")
    listed = ", ".join(choices[:-1]) + (f", or {choices[-1]}" if len(choices) > 1 else choices[-1])
    field = param.rsplit("[", 1)[-1].rstrip("]")
    return ContractError(
        f"Invalid {field}: must be one of {listed}", param=param, code="parameter_invalid_string"
    )


def _type_error(param: str, value: Any, schema: tuple[Any, ...]) -> ContractError:
    wanted = {"object": "object", "hash": "object", "any": "object", "array": "array"}.get(schema[0])
    if wanted is not None:
        return ContractError(f"Invalid {wanted}", param=param, code="parameter_invalid_empty")
    return ContractError(
        f"Invalid {schema[0]}: {value if isinstance(value, str) else 'a hash or array'}",
        param=param,
        code="parameter_invalid_string_blank",
    )


def check_metadata(metadata: dict[str, Any], param: str = "metadata") -> None:
    """Stripe's documented metadata limits (outside its spec)."""
    if len(metadata) > METADATA_MAX_KEYS:
        raise ContractError(
            f"Invalid {param}: metadata can have at most {METADATA_MAX_KEYS} keys (got {len(metadata)}).",
            param=param,
            code="parameter_invalid",
        )
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY_CHARS:
            raise ContractError(
                f"Metadata keys can have up to {METADATA_MAX_KEY_CHARS} characters; {key!r} has {len(key)}.",
                param=f"{param}[{key}]",
                code="parameter_invalid",
            )
        if isinstance(value, str) and len(value) > METADATA_MAX_VALUE_CHARS:
            raise ContractError(
                f"Metadata values can have up to {METADATA_MAX_VALUE_CHARS} characters; "
                f"the value of {key!r} has {len(value)}.",
                param=f"{param}[{key}]",
                code="parameter_invalid",
            )


# --- endpoints ------------------------------------------------------------------------------------------


def _params_class(method: str, route: str) -> type | None:
    import stripe.params as p
    import stripe.params.checkout as c

    table: dict[tuple[str, str], type] = {
        ("POST", "/v1/checkout/sessions"): c.SessionCreateParams,
        ("GET", "/v1/checkout/sessions"): c.SessionListParams,
        ("GET", "/v1/checkout/sessions/{session}"): c.SessionRetrieveParams,
        ("GET", "/v1/payment_intents/{intent}"): p.PaymentIntentRetrieveParams,
        ("GET", "/v1/charges/{charge}"): p.ChargeRetrieveParams,
        ("POST", "/v1/refunds"): p.RefundCreateParams,
        ("GET", "/v1/refunds"): p.RefundListParams,
        ("GET", "/v1/refunds/{refund}"): p.RefundRetrieveParams,
        ("GET", "/v1/events"): p.EventListParams,
        ("GET", "/v1/events/{id}"): p.EventRetrieveParams,
        ("GET", "/v1/balance"): p.BalanceRetrieveParams,
    }
    return table.get((method, route))


def route_of(path: str) -> str:
    """The spec's path template of a concrete path (`/v1/refunds/re_1` -> `/v1/refunds/{refund}`)."""
    parts = [p for p in path.split("/") if p]
    names = {"checkout/sessions": "session", "payment_intents": "intent", "charges": "charge"}
    names |= {"refunds": "refund", "events": "id"}
    if len(parts) == 4 and parts[1:3] == ["checkout", "sessions"]:
        return "/v1/checkout/sessions/{session}"
    if len(parts) == 3 and parts[1] in names:
        return f"/v1/{parts[1]}/{{{names[parts[1]]}}}"
    return "/" + "/".join(parts)


def validate_request(method: str, path: str, params: dict[str, Any]) -> None:
    """Raise ContractError for anything Stripe would answer 400 to; unknown routes are left to the caller."""
    route = route_of(path)
    cls = _params_class(method, route)
    if cls is None:
        return
    _check_object(params, cls, "")
    if route == "/v1/checkout/sessions" and method == "POST":
        _checkout_rules(params)
    elif route == "/v1/refunds" and method == "POST":
        if not params.get("payment_intent") and not params.get("charge"):
            raise ContractError(
                "One of the following params should be provided for this request: payment_intent or charge.",
                param=None,
                code="parameter_missing",
            )
        if "amount" in params and int(params["amount"]) < 1:
            raise ContractError("Invalid positive integer", param="amount", code="parameter_invalid_integer")
    if method == "GET" and "limit" in params and not 1 <= int(params["limit"]) <= 100:
        raise ContractError(
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            param="limit",
            code="parameter_invalid_integer",
        )
    if route == "/v1/events" and method == "GET":
        if "type" in params and "types" in params:
            raise ContractError(
                "You may pass either `type` or `types`, but not both.",
                param="types",
                code="parameters_exclusive",
            )
        if len(params.get("types") or []) > MAX_EVENT_TYPES:
            raise ContractError(
                f"types can have at most {MAX_EVENT_TYPES} entries.", param="types", code="parameter_invalid"
            )


def format_minimum(amount: int, currency: str) -> str:
    if currency in ZERO_DECIMAL:
        return f"{amount} {currency}"
    return f"{amount / 100:.2f} {currency}"


def _checkout_rules(params: dict[str, Any]) -> None:
    mode = params.get("mode")
    if mode is None:
        raise ContractError("Missing required param: mode.", param="mode", code="parameter_missing")
    ui_mode = params.get("ui_mode", "hosted_page")
    if ui_mode in ("hosted", "hosted_page") and mode != "setup" and not params.get("success_url"):
        raise ContractError(
            "Missing required param: success_url.", param="success_url", code="parameter_missing"
        )
    items = params.get("line_items") or []
    if mode == "payment" and not items:
        raise ContractError(
            "Missing required param: line_items.", param="line_items", code="parameter_missing"
        )
    total = 0
    currency = None
    for i, item in enumerate(items):
        name = f"line_items[{i}]"
        price = item.get("price_data")
        if price is None and not item.get("price"):
            raise ContractError(
                f"You must specify either `price` or `price_data` in {name}.",
                param=name,
                code="parameter_missing",
            )
        if price is None:
            raise ContractError(
                f"No such price: '{item['price']}'", param=f"{name}[price]", code="resource_missing"
            )
        if not price.get("product") and not price.get("product_data"):
            raise ContractError(
                "You must specify either `product` or `product_data` when creating a price.",
                param=f"{name}[price_data][product_data]",
                code="parameter_missing",
            )
        if "unit_amount" not in price and "unit_amount_decimal" not in price:
            raise ContractError(
                f"Missing required param: {name}[price_data][unit_amount].",
                param=f"{name}[price_data][unit_amount]",
                code="parameter_missing",
            )
        unit = int(price.get("unit_amount") or float(price.get("unit_amount_decimal") or 0))
        if unit < 0:
            raise ContractError(
                "This value must be greater than or equal to 0.",
                param=f"{name}[price_data][unit_amount]",
                code="parameter_invalid_integer",
            )
        total += unit * int(item.get("quantity", 1))
        this = str(price["currency"]).lower()
        if currency is not None and this != currency:
            raise ContractError(
                "All line items must use the same currency.",
                param=f"{name}[price_data][currency]",
                code="parameter_invalid",
            )
        currency = this
    if currency is None:
        return
    minimum = CHECKOUT_MINIMUMS.get(currency, 50)
    if 0 < total < minimum or (total == 0 and mode == "payment"):
        raise ContractError(
            "The Checkout Session's total amount due must add up to at least "
            f"{format_minimum(minimum, currency)}",
            param="line_items",
            code="amount_too_small",
        )
    if total > CHECKOUT_MAX_AMOUNT:
        raise ContractError(
            f"The Checkout Session's total amount due must be no more than {CHECKOUT_MAX_AMOUNT}.",
            param="line_items",
            code="amount_too_large",
        )


# --- response shapes ------------------------------------------------------------------------------------


@cache
def _reference() -> dict[str, Any]:
    # Derived from shared/reference/stripe (spec3 subset: property names and nullable flags; fixtures3:
    # example objects), kept in the repository so a clean clone runs the suite.
    return json.loads(SHAPES.read_text())["resources"]


# Expandable lists Stripe stopped embedding (charge.refunds since 2022-11-15): absent unless expanded.
_NOT_EMBEDDED = {"charge": {"refunds"}}


def shaped(kind: str, **fields: Any) -> dict[str, Any]:
    """An object of `kind` like Stripe's example: every spec property, nullable ones null, `fields` set."""
    resource = _reference()[kind]
    props = set(resource["properties"])
    nullable = set(resource["nullable"])
    example = resource["example"]
    obj: dict[str, Any] = {}
    for name in resource["properties"]:
        if name in _NOT_EMBEDDED.get(kind, set()):
            continue
        obj[name] = None if name in nullable else json.loads(json.dumps(example.get(name)))
    for name, value in fields.items():
        if name not in props and not name.startswith("_"):
            raise KeyError(f"{kind} has no property {name!r} in Stripe's spec")
        obj[name] = value
    return obj
