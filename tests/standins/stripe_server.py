"""A small stateful Stripe stand-in over real HTTP, for the official `stripe` SDK to talk to in tests.

It speaks the few endpoints codex uses (checkout sessions, payment intents, refunds, events, balance),
form-encoded in and JSON out like api.stripe.com, with Stripe's error shape and status codes, the
Idempotency-Key header on POSTs, list pagination (`created` filters, `limit`, `starting_after`,
`has_more`), fault injection (5xx / 429 / slow responses) and a request log. Helpers let a test drive
the state the way Stripe itself would: pay or expire a session, refund in the dashboard, emit events.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.standins.stripe_contract import ContractError, shaped, validate_request

API_VERSION = "2026-10-28.endive"
DEFAULT_API_KEY = "sk_test_standin_0123456789abcdef"
MAX_LIMIT = 100


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A real `Stripe-Signature` header: `t=<ts>,v1=<HMAC-SHA256(secret, "<ts>.<payload>")>`."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    signed = f"{ts}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


# --- form decoding: `a[b][0][c]=v` into nested dicts and lists, as the SDK encodes them ---

_TOKEN = re.compile(r"\[([^\]]*)\]")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        tokens = [head] + (_TOKEN.findall("[" + rest) if rest else [])
        node: Any = root
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            if token == "":  # `types[]=x`: append
                token = str(len(node))
            if last:
                node[token] = value
            else:
                node = node.setdefault(token, {})
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


class StripeAPIError(Exception):
    """Raised inside handlers; becomes Stripe's JSON error document."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **extra}}


def _missing(kind: str, ident: str, param: str = "id") -> StripeAPIError:
    return StripeAPIError(404, f"No such {kind}: '{ident}'", code="resource_missing", param=param)


@dataclass
class Fault:
    status: int
    remaining: int
    method: str | None = None
    path: str | None = None
    retry_after: str | None = "0"
    after_effect: bool = False  # do the work, then answer the fault (Stripe did it, we never heard)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


@dataclass
class Delay:
    seconds: float
    remaining: int | None
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


@dataclass
class LoggedRequest:
    """One request as the stand-in received it: `params` is the decoded query (GET) or form body (POST)."""

    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    status: int = 0
    error: dict[str, Any] | None = None  # Stripe's error document when the answer was 4xx/5xx

    @property
    def query(self) -> dict[str, Any]:  # the older name, for GET filters
        return self.params


@dataclass
class _State:
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    pi_metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # session id -> PI metadata
    idempotency: dict[str, tuple[str, dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    delays: list[Delay] = field(default_factory=list)
    log: list[LoggedRequest] = field(default_factory=list)
    seq: int = 0  # insertion order breaks ties between equal `created` seconds


class StripeStandin:
    """The server plus the helpers tests use; `url` is what STRIPE_API_BASE should be set to."""

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        self._lock = threading.RLock()
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> StripeStandin:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="stripe-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    @property
    def url(self) -> str:
        assert self._server is not None, "stand-in not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StripeStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- fault injection and the request log ---

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        method: str | None = None,
        path: str | None = None,
        retry_after: str | None = "0",
        after_effect: bool = False,
    ) -> None:
        """The next `count` matching requests answer `status` (500/502/503/429) instead of working.

        `retry_after` is sent as a Retry-After header ("0" keeps retrying tests fast; None omits it,
        as api.stripe.com does). With `after_effect` the request is carried out first (a refund is
        made, its idempotency key remembered) and only the answer is the fault.
        """
        with self._lock:
            self._state.faults.append(
                Fault(status, count, method and method.upper(), path, retry_after, after_effect)
            )

    def slow(
        self, seconds: float, count: int | None = None, method: str | None = None, path: str | None = None
    ) -> None:
        """Delay matching responses by `seconds` (for `count` requests, or until reset)."""
        with self._lock:
            self._state.delays.append(Delay(seconds, count, method and method.upper(), path))

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()
            self._state.delays.clear()

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._state.log)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests reached the stand-in (path is a prefix, e.g. "/v1/checkout/sessions")."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or r.path.startswith(path))
        )

    def clear_log(self) -> None:
        with self._lock:
            self._state.log.clear()

    # --- state helpers: what Stripe (or a person in its dashboard) would do ---

    def _created(self, created: int | float | None) -> int:
        return int(time.time()) if created is None else int(created)

    def _next_seq(self) -> int:
        self._state.seq += 1
        return self._state.seq

    def create_session(
        self,
        *,
        amount_total: int = 999,
        currency: str = "usd",
        metadata: dict[str, str] | None = None,
        customer_email: str | None = None,
        created: int | float | None = None,
        status: str = "open",
        payment_status: str = "unpaid",
        success_url: str = "http://localhost:5173/success",
        cancel_url: str = "http://localhost:5173/cancel",
        title: str = "Content",
    ) -> dict[str, Any]:
        """A checkout session as if created through the API, at a chosen `created` time."""
        with self._lock:
            session = self._new_session(
                {
                    "mode": "payment",
                    "metadata": metadata or {},
                    "customer_email": customer_email,
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "line_items": [
                        {
                            "quantity": "1",
                            "price_data": {
                                "currency": currency,
                                "unit_amount": str(amount_total),
                                "product_data": {"name": title},
                            },
                        }
                    ],
                    "payment_intent_data": {"metadata": metadata or {}},
                },
                created=self._created(created),
            )
            session["status"] = status
            session["payment_status"] = payment_status
            return dict(session)

    def session(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._state.sessions[session_id]))

    @property
    def sessions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._state.sessions.values()]

    def mark_paid(
        self,
        session_id: str,
        *,
        amount_total: int | None = None,
        payment_status: str = "paid",
        created: int | float | None = None,
        emit_event: bool = True,
    ) -> dict[str, Any]:
        """The customer paid: status complete, payment_status paid, a succeeded PaymentIntent and charge.

        `amount_total` overrides what was charged (to test amount mismatches). With
        `payment_status="unpaid"` the session completes with a delayed payment method still pending.
        Emits `checkout.session.completed` like Stripe (unless `emit_event=False`).
        """
        with self._lock:
            session = self._get_session(session_id)
            if amount_total is not None:
                session["amount_total"] = amount_total
                session["amount_subtotal"] = amount_total
            now = self._created(created)
            pi = self._new_payment_intent(session, now, succeeded=payment_status == "paid")
            session["status"] = "complete"
            session["payment_status"] = payment_status
            session["payment_intent"] = pi["id"]
            session["customer_details"] = {"email": session.get("customer_email"), "name": None}
            if emit_event:
                self._emit("checkout.session.completed", session, now)
            return json.loads(json.dumps(session))

    def mark_async_payment(
        self, session_id: str, *, succeeded: bool, emit_event: bool = True
    ) -> dict[str, Any]:
        """A delayed payment (e.g. bank debit) settled or failed after `checkout.session.completed`."""
        with self._lock:
            session = self._get_session(session_id)
            now = int(time.time())
            pi_id = session.get("payment_intent") or self._new_payment_intent(session, now, False)["id"]
            session["payment_intent"] = pi_id
            pi = self._state.payment_intents[pi_id]
            if succeeded:
                session["payment_status"] = "paid"
                pi["status"] = "succeeded"
                pi["amount_received"] = pi["amount"]
                self._new_charge(pi, now)
                kind = "checkout.session.async_payment_succeeded"
            else:
                pi["status"] = "requires_payment_method"
                kind = "checkout.session.async_payment_failed"
            session["status"] = "complete"
            if emit_event:
                self._emit(kind, session, now)
            return json.loads(json.dumps(session))

    def mark_expired(self, session_id: str, *, emit_event: bool = True) -> dict[str, Any]:
        """The session timed out unpaid: status expired; emits `checkout.session.expired`."""
        with self._lock:
            session = self._get_session(session_id)
            session["status"] = "expired"
            session["url"] = None
            if emit_event:
                self._emit("checkout.session.expired", session, int(time.time()))
            return json.loads(json.dumps(session))

    def dashboard_refund(
        self,
        payment_intent: str,
        *,
        amount: int | None = None,
        created: int | float | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Someone refunded in Stripe's dashboard: a refund, the charge marked refunded, the events."""
        with self._lock:
            return self._refund(payment_intent, amount, reason, {}, self._created(created))

    def refunds(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._state.refunds.values()]

    def charge(self, charge_id: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._state.charges[charge_id]))

    def add_event(
        self, type: str, data_object: dict[str, Any], *, created: int | float | None = None
    ) -> dict[str, Any]:
        """Store an event of any type (listable through /v1/events); returns it."""
        with self._lock:
            return json.loads(json.dumps(self._emit(type, data_object, self._created(created))))

    def event_for_session(
        self, type: str, session_id: str, *, created: int | float | None = None
    ) -> dict[str, Any]:
        """An event of `type` carrying the session's current state."""
        with self._lock:
            return json.loads(
                json.dumps(self._emit(type, self._get_session(session_id), self._created(created)))
            )

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return json.loads(json.dumps(list(self._state.events.values())))

    # --- internals (called with the lock held) ---

    def _get_session(self, session_id: str) -> dict[str, Any]:
        try:
            return self._state.sessions[session_id]
        except KeyError:
            raise _missing("checkout.session", session_id, "session") from None

    def _new_session(self, params: dict[str, Any], created: int | None = None) -> dict[str, Any]:
        # The request was validated against Stripe's contract before it got here (stripe_contract).
        items = params.get("line_items") or []
        total = 0
        currency = None
        for item in items:
            price = item.get("price_data") or {}
            total += int(price.get("unit_amount") or 0) * int(item.get("quantity", 1))
            currency = str(price.get("currency", "usd")).lower()
        metadata = params.get("metadata") or {}
        created = int(time.time()) if created is None else created
        sid = f"cs_test_{secrets.token_hex(16)}"
        session = shaped(
            "checkout.session",
            id=sid,
            object="checkout.session",
            amount_subtotal=total,
            amount_total=total,
            cancel_url=params.get("cancel_url"),
            client_reference_id=params.get("client_reference_id"),
            created=created,
            currency=currency,
            customer_email=params.get("customer_email"),
            expires_at=created + 24 * 3600,
            livemode=False,
            metadata={str(k): str(v) for k, v in metadata.items()},
            mode=params.get("mode", "payment"),
            payment_intent=None,
            payment_method_types=["card"],
            payment_status="unpaid",
            status="open",
            success_url=params.get("success_url"),
            url=f"{self.url}/c/pay/{sid}",
            _seq=self._next_seq(),
        )
        pi_data = params.get("payment_intent_data") or {}
        self._state.pi_metadata[sid] = dict(pi_data.get("metadata") or {})
        self._state.sessions[sid] = session
        return session

    def _new_payment_intent(self, session: dict[str, Any], now: int, succeeded: bool) -> dict[str, Any]:
        pi = shaped(
            "payment_intent",
            id=_new_id("pi"),
            object="payment_intent",
            amount=session["amount_total"],
            amount_received=session["amount_total"] if succeeded else 0,
            currency=session["currency"],
            created=now,
            latest_charge=None,
            livemode=False,
            metadata=dict(self._state.pi_metadata.get(session["id"], {})),
            payment_method_types=["card"],
            status="succeeded" if succeeded else "processing",
            _seq=self._next_seq(),
        )
        self._state.payment_intents[pi["id"]] = pi
        if succeeded:
            self._new_charge(pi, now)
        return pi

    def _new_charge(self, pi: dict[str, Any], now: int) -> dict[str, Any]:
        # As Stripe does: a charge does not copy its PaymentIntent's metadata, and since API
        # 2022-11-15 it carries no embedded `refunds` list.
        charge = shaped(
            "charge",
            id=_new_id("ch"),
            object="charge",
            amount=pi["amount"],
            amount_captured=pi["amount"],
            amount_refunded=0,
            captured=True,
            created=now,
            currency=pi["currency"],
            disputed=False,
            livemode=False,
            metadata={},
            paid=True,
            payment_intent=pi["id"],
            refunded=False,
            status="succeeded",
            _seq=self._next_seq(),
        )
        self._state.charges[charge["id"]] = charge
        pi["latest_charge"] = charge["id"]
        return charge

    def _refund(
        self,
        payment_intent: str | None,
        amount: int | None,
        reason: str | None,
        metadata: dict[str, str],
        now: int,
    ) -> dict[str, Any]:
        if not payment_intent:
            raise StripeAPIError(
                400,
                "One of the following params should be provided for this request: payment_intent or charge.",
            )
        pi = self._state.payment_intents.get(payment_intent)
        if pi is None:
            raise _missing("payment_intent", payment_intent, "payment_intent")
        charge = self._state.charges.get(pi.get("latest_charge") or "")
        if pi["status"] != "succeeded" or charge is None:
            raise StripeAPIError(
                400,
                f"This PaymentIntent ({payment_intent}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeAPIError(
                400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = remaining if amount is None else int(amount)
        if amount <= 0 or amount > remaining:
            raise StripeAPIError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                param="amount",
            )
        if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
            raise StripeAPIError(400, f"Invalid reason: {reason}", param="reason")
        refund = shaped(
            "refund",
            id=_new_id("re"),
            object="refund",
            amount=amount,
            charge=charge["id"],
            created=now,
            currency=charge["currency"],
            metadata={str(k): str(v) for k, v in (metadata or {}).items()},
            payment_intent=payment_intent,
            reason=reason,
            status="succeeded",
            _seq=self._next_seq(),
        )
        self._state.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self._emit("refund.created", refund, now)
        self._emit("charge.refunded", charge, now)
        return _public(refund)

    def _emit(self, type: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
        event = shaped(
            "event",
            id=_new_id("evt"),
            object="event",
            api_version=API_VERSION,
            created=created,
            data={"object": _public(json.loads(json.dumps(obj)))},
            livemode=False,
            pending_webhooks=1,
            request={"id": None, "idempotency_key": None},
            type=type,
            _seq=self._next_seq(),
        )
        self._state.events[event["id"]] = event
        return _public(event)

    # --- HTTP dispatch ---

    def handle(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or raw text, extra headers) for one request."""
        entry = LoggedRequest(method, path, json.loads(json.dumps(params)), headers.get("idempotency-key"))
        status, body, extra = self._handle(entry, method, path, params, headers)
        entry.status = status
        if status >= 400 and isinstance(body, dict):
            entry.error = body.get("error")
        return status, body, extra

    def logged(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        """The logged requests matching `method` and a `path` prefix, oldest first."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or r.path.startswith(path))
        ]

    def _handle(
        self, entry: LoggedRequest, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self._state.log.append(entry)
            delay = next((d for d in self._state.delays if d.matches(method, path)), None)
            if delay is not None and delay.remaining is not None:
                delay.remaining -= 1
                if delay.remaining <= 0:
                    self._state.delays.remove(delay)
            fault = next((f for f in self._state.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._state.faults.remove(fault)
        if delay is not None:
            time.sleep(delay.seconds)
        if fault is not None and not fault.after_effect:
            return _fault_response(fault)
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            given = auth.removeprefix("Bearer ").strip()
            shown = f"{given[:8]}{'*' * max(0, len(given) - 12)}{given[-4:]}" if len(given) > 12 else "****"
            return (
                401,
                StripeAPIError(401, f"Invalid API Key provided: {shown}").body,
                {},
            )
        try:
            validate_request(method, path, params)
        except ContractError as exc:
            return exc.status, exc.body, {}
        key = headers.get("idempotency-key") if method == "POST" else None
        with self._lock:
            if key:
                stored = self._state.idempotency.get(key)
                if stored is not None:
                    s_path, s_params, s_status, s_body = stored
                    if s_path != path or s_params != params:
                        err = StripeAPIError(
                            400,
                            "Keys for idempotent requests can only be used with the same parameters "
                            "they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                            type_="idempotency_error",
                        )
                        return 400, err.body, {}
                    if fault is not None:
                        return _fault_response(fault)
                    return s_status, s_body, {"Idempotent-Replayed": "true"}
            try:
                status, body = 200, self._route(method, path, params)
            except StripeAPIError as exc:
                status, body = exc.status, exc.body
            if key and status < 500:
                self._state.idempotency[key] = (path, params, status, body)
        if fault is not None:
            return _fault_response(fault)
        return status, body, {}

    def _route(self, method: str, path: str, params: dict[str, Any]) -> Any:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "v1":
            raise StripeAPIError(404, f"Unrecognized request URL ({method}: {path}).")
        rest = parts[1:]
        if rest == ["checkout", "sessions"]:
            if method == "POST":
                return _public(self._new_session(params))
            if method == "GET":
                return self._list(
                    "/v1/checkout/sessions", self._state.sessions, params, ("status", "payment_intent")
                )
        if len(rest) == 3 and rest[:2] == ["checkout", "sessions"] and method == "GET":
            return _public(self._get_session(rest[2]))
        if len(rest) == 2 and rest[0] == "payment_intents" and method == "GET":
            pi = self._state.payment_intents.get(rest[1])
            if pi is None:
                raise _missing("payment_intent", rest[1], "intent")
            return _public(pi)
        if rest == ["refunds"]:
            if method == "POST":
                return self._refund(
                    params.get("payment_intent"),
                    int(params["amount"]) if params.get("amount") else None,
                    params.get("reason"),
                    params.get("metadata") or {},
                    int(time.time()),
                )
            if method == "GET":
                return self._list("/v1/refunds", self._state.refunds, params, ("payment_intent", "charge"))
        if len(rest) == 2 and rest[0] == "refunds" and method == "GET":
            refund = self._state.refunds.get(rest[1])
            if refund is None:
                raise _missing("refund", rest[1], "refund")
            return _public(refund)
        if len(rest) == 2 and rest[0] == "charges" and method == "GET":
            charge = self._state.charges.get(rest[1])
            if charge is None:
                raise _missing("charge", rest[1], "charge")
            return _public(charge)
        if rest == ["events"] and method == "GET":
            return self._list("/v1/events", self._state.events, params, ("type",))
        if len(rest) == 2 and rest[0] == "events" and method == "GET":
            event = self._state.events.get(rest[1])
            if event is None:
                raise _missing("event", rest[1], "id")
            return _public(event)
        if rest == ["balance"] and method == "GET":
            return {
                "object": "balance",
                "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                "livemode": False,
            }
        raise StripeAPIError(404, f"Unrecognized request URL ({method}: {path}).")

    def _list(
        self, url: str, store: dict[str, dict[str, Any]], params: dict[str, Any], exact: tuple[str, ...]
    ) -> dict[str, Any]:
        try:
            limit = int(params.get("limit", 10))
        except ValueError:
            raise StripeAPIError(400, "Invalid integer: limit", param="limit") from None
        if limit < 1 or limit > MAX_LIMIT:
            raise StripeAPIError(400, "This value must be less than or equal to 100.", param="limit")
        rows = sorted(store.values(), key=lambda r: (r["created"], r["_seq"]), reverse=True)
        created = params.get("created")
        if isinstance(created, dict):
            for op, test in (
                ("gte", lambda a, b: a >= b),
                ("gt", lambda a, b: a > b),
                ("lte", lambda a, b: a <= b),
                ("lt", lambda a, b: a < b),
            ):
                if op in created:
                    bound = int(created[op])
                    rows = [r for r in rows if test(r["created"], bound)]
        elif created is not None:
            rows = [r for r in rows if r["created"] == int(created)]
        for name in exact:
            if params.get(name) is not None:
                rows = [r for r in rows if r.get(name) == params[name]]
        types = params.get("types")
        if types:
            wanted = set(types if isinstance(types, list) else [types])
            rows = [r for r in rows if r.get("type") in wanted]
        after = params.get("starting_after")
        before = params.get("ending_before")
        if after:
            if after not in store:
                raise _missing("object", after, "starting_after")
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(after) + 1 :] if after in ids else []
        elif before:
            if before not in store:
                raise _missing("object", before, "ending_before")
            ids = [r["id"] for r in rows]
            rows = rows[: ids.index(before)] if before in ids else []
            rows = rows[-limit:]
        page = rows[:limit]
        return {
            "object": "list",
            "data": [_public(r) for r in page],
            "has_more": len(rows) > limit,
            "url": url,
        }


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API returns it (without the stand-in's private bookkeeping)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _fault_response(fault: Fault) -> tuple[int, Any, dict[str, str]]:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    if fault.status == 429:
        body: Any = {
            "error": {
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": "Too many requests hit the API too quickly. We recommend an exponential "
                "backoff of your requests.",
            }
        }
    elif fault.status == 502:
        body = "<html><body><h1>502 Bad Gateway</h1></body></html>"  # gateways do not speak JSON
    else:
        body = {"error": {"type": "api_error", "message": "An unknown error occurred on Stripe's side."}}
    return fault.status, body, headers


class _Handler(BaseHTTPRequestHandler):
    standin: StripeStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if method == "POST":
            query += parse_qsl(body.decode(), keep_blank_values=True)
        params = decode_form(query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload, extra = self.standin.handle(method, split.path, params, headers)
        except Exception as exc:  # a bug in the stand-in: answer like Stripe's 500 and say why
            status, payload, extra = 500, {"error": {"type": "api_error", "message": repr(exc)}}, {}
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if isinstance(payload, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        self.send_header("Stripe-Version", API_VERSION)
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")
