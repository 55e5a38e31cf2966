"""The Stripe adapter: the only module that imports `stripe`. Plain dicts out, our errors out.

Built over one `stripe.StripeClient` (no global api_key), API version pinned, request timeouts, the
SDK's own network retries plus a small bounded backoff of ours for 429/5xx/connection failures.
Every write carries an idempotency key, kept the same across our retries so a retry never charges or
refunds twice. Messages carry Stripe's explanation but never the secret key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from services.core.errors import ConfigurationError, ExternalServiceError
from services.core.masking import mask_secret
from services.settings import Settings

if TYPE_CHECKING:
    from stripe.params import RefundCreateParams
    from stripe.params.checkout import SessionCreateParams

# The API version our code (and the SDK's types) are written against; Stripe's default for the
# account is not used, so a dashboard upgrade cannot change object shapes under us.
STRIPE_API_VERSION = "2026-10-28.endive"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
SDK_NETWORK_RETRIES = 2
ATTEMPTS = 3  # our own attempts around the SDK's retries, for 429 / 5xx / unreachable
BASE_DELAY_S = 0.5
MAX_DELAY_S = 8.0
MAX_RETRY_AFTER_S = 30.0
PAGE_SIZE = 100

T = TypeVar("T")


class StripeError(ExternalServiceError):
    """Stripe answered with an error (or could not be reached). `stripe_message` is Stripe's own words."""

    def __init__(
        self,
        message: str,
        *,
        stripe_message: str,
        kind: str,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.stripe_message = stripe_message
        self.kind = kind
        self.http_status = http_status
        self.code = code


class StripeUnavailable(StripeError):
    """Stripe kept failing (429, 5xx, network) after every retry; trying again later may work.

    `may_have_succeeded`: the request reached Stripe and the answer was lost or a 5xx (or a read timed
    out), so a write may have been carried out; False when it was never sent (connection refused,
    connect timeout) or Stripe said it did not process it (429).
    """

    def __init__(self, message: str, *, may_have_succeeded: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.may_have_succeeded = may_have_succeeded


# Which SDK errors we expect and what they mean; anything else is a bug and re-raises.
_KINDS: tuple[tuple[type[stripe.StripeError], str, bool], ...] = (
    (stripe.CardError, "card", False),
    (stripe.IdempotencyError, "idempotency", False),
    (stripe.InvalidRequestError, "invalid_request", False),
    (stripe.AuthenticationError, "authentication", False),
    (stripe.PermissionError, "permission", False),
    (stripe.RateLimitError, "rate_limit", True),
    (stripe.APIConnectionError, "connection", True),
    (stripe.APIError, "api", True),
)


class _HTTPClient(stripe.RequestsClient):
    """The SDK's requests client with timeouts, honouring a `Retry-After` header between its retries."""

    def __init__(self, *, base_delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._base_delay = base_delay

    def _should_retry(
        self, response: Any, api_connection_error: Any, num_retries: int, max_network_retries: Any
    ) -> bool:
        headers = response[2] if response is not None else None
        self._thread_local.retry_after = _retry_after(headers)
        return super()._should_retry(response, api_connection_error, num_retries, max_network_retries)

    def _handle_request_error(self, e: Exception) -> Any:
        # Remember what went wrong on the wire: the SDK's own text is four lines for a person.
        self._thread_local.network_error = e
        return super()._handle_request_error(e)

    def last_network_error(self) -> Exception | None:
        return getattr(self._thread_local, "network_error", None)

    def clear_network_error(self) -> None:
        self._thread_local.network_error = None

    def _sleep_time_seconds(self, num_retries: int) -> float:
        retry_after = getattr(self._thread_local, "retry_after", None)
        if retry_after is not None:
            return retry_after
        return min(self._base_delay * (2 ** (num_retries - 1)), MAX_DELAY_S)


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_S))
    except ValueError:
        return None


def build_stripe_gateway(settings: Settings) -> StripeGateway:
    """The gateway for these settings; ConfigurationError when no secret key is configured."""
    if not settings.stripe_secret_key:
        raise ConfigurationError(
            "STRIPE_SECRET_KEY is not set; set it (and STRIPE_API_BASE for a local stand-in) "
            "to use payment commands."
        )
    return StripeGateway(settings.stripe_secret_key, api_base=settings.stripe_api_base or None)


def _ts(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain, JSON-ready dicts and lists."""
    return obj.to_dict(recursive=True, for_json=True) if hasattr(obj, "to_dict") else dict(obj)


class StripeGateway:
    """What codex asks of Stripe, as plain dicts; every failure is a StripeError (an ExternalServiceError)."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        attempts: int = ATTEMPTS,
        base_delay: float = BASE_DELAY_S,
        sdk_retries: int = SDK_NETWORK_RETRIES,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api_key = api_key
        self._attempts = max(1, attempts)
        self._base_delay = base_delay
        self._sleep = sleep
        self.api_base = (api_base or stripe.DEFAULT_API_BASE).rstrip("/")
        self._http = _HTTPClient(base_delay=base_delay, timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=STRIPE_API_VERSION,
            base_addresses={"api": self.api_base},
            max_network_retries=sdk_retries,
            http_client=self._http,
        )

    # --- checkout sessions ---

    def create_checkout_session(
        self,
        *,
        purchase_id: str,
        customer_id: str,
        customer_email: str,
        content_id: str,
        organization_id: str,
        title: str,
        amount_cents: int,
        currency: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> dict[str, Any]:
        metadata = {
            "purchaseId": str(purchase_id),
            "customerId": str(customer_id),
            "contentId": str(content_id),
            "organizationId": str(organization_id),
        }
        # Typed by the SDK's own request types, so mypy checks every parameter name and type we send.
        params: SessionCreateParams = {
            "mode": "payment",
            "customer_email": customer_email,
            "client_reference_id": str(purchase_id),
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": int(amount_cents),
                        "product_data": {"name": title[:250]},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            # Copied onto the PaymentIntent (and so its charges), so a refund or charge event made
            # outside codex can still be traced back to the purchase.
            "payment_intent_data": {"metadata": metadata},
        }
        session = self._call(
            "creating a checkout session",
            write=True,
            fn=lambda: self._client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": idempotency_key}
            ),
        )
        return _plain(session)

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        return _plain(
            self._call(
                "retrieving a checkout session",
                lambda: self._client.v1.checkout.sessions.retrieve(session_id),
            )
        )

    def iter_checkout_sessions(
        self, created_gte: datetime, created_lte: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every checkout session created in the window, newest first, 100 per request."""
        return self._paginate(
            "listing checkout sessions",
            self._client.v1.checkout.sessions.list,
            {"created": self._created(created_gte, created_lte)},
        )

    def retrieve_payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return _plain(
            self._call(
                "retrieving a payment intent",
                lambda: self._client.v1.payment_intents.retrieve(payment_intent_id),
            )
        )

    # --- refunds ---

    def create_refund(
        self,
        *,
        payment_intent: str,
        reason: str,
        metadata: dict[str, str],
        idempotency_key: str,
        amount: int | None = None,
    ) -> dict[str, Any]:
        """A refund on the payment intent; the same idempotency key returns the same refund."""
        params: RefundCreateParams = {
            "payment_intent": payment_intent,
            "reason": reason,
            "metadata": {str(k): str(v) for k, v in metadata.items()},
        }
        if amount is not None:
            params["amount"] = int(amount)
        refund = self._call(
            "creating a refund",
            write=True,
            fn=lambda: self._client.v1.refunds.create(
                params=params, options={"idempotency_key": idempotency_key}
            ),
        )
        return _plain(refund)

    def iter_refunds(
        self, created_gte: datetime, created_lte: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        return self._paginate(
            "listing refunds",
            self._client.v1.refunds.list,
            {"created": self._created(created_gte, created_lte)},
        )

    # --- events ---

    def iter_events(self, created_gte: datetime, types: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Events since `created_gte` (Stripe keeps 30 days), newest first, optionally of some types."""
        params: dict[str, Any] = {"created": {"gte": _ts(created_gte)}}
        if types:
            params["types"] = list(types)
        return self._paginate("listing events", self._client.v1.events.list, params)

    def retrieve_event(self, event_id: str) -> dict[str, Any]:
        return _plain(self._call("retrieving an event", lambda: self._client.v1.events.retrieve(event_id)))

    # --- health ---

    def check(self) -> str:
        """One cheap authenticated call; says which mode the key is in."""
        balance = self._call("checking the connection", lambda: self._client.v1.balance.retrieve())
        mode = "live" if getattr(balance, "livemode", False) else "test"
        return f"Stripe reachable at {self.api_base} ({mode} mode)"

    # --- plumbing ---

    @staticmethod
    def _created(gte: datetime, lte: datetime | None) -> dict[str, int]:
        window = {"gte": _ts(gte)}
        if lte is not None:
            window["lte"] = _ts(lte)
        return window

    def _paginate(
        self, what: str, list_fn: Callable[..., Any], params: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        # Our own loop rather than auto_paging_iter, so each page request gets the bounded retries.
        query = {**params, "limit": PAGE_SIZE}
        while True:
            page = self._call(what, lambda q=dict(query): list_fn(params=q))  # type: ignore[misc]
            items = [_plain(item) for item in page.data]
            yield from items
            if not page.has_more or not items:
                return
            query["starting_after"] = items[-1]["id"]

    def _call(self, what: str, fn: Callable[[], T], write: bool = False) -> T:
        last: stripe.StripeError | None = None
        reached = False  # did any attempt reach Stripe (so a write may have happened)?
        attempts = 0
        for attempt in range(1, self._attempts + 1):
            attempts = attempt
            self._http.clear_network_error()
            try:
                return fn()
            except stripe.StripeError as exc:
                kind, retryable = _classify(exc)
                if kind is None:
                    raise
                if retryable and not _is_retryable_api_error(exc):
                    retryable = False
                if not retryable:
                    raise self._error(what, exc, kind) from None
                last = exc
                not_sent = kind == "connection" and _never_sent(self._http.last_network_error())
                reached = reached or (kind == "api" or (kind == "connection" and not not_sent))
                if not_sent:
                    break  # nothing listens there: the SDK's own retries already tried again
                if attempt < self._attempts:
                    delay = _retry_after(getattr(exc, "headers", None))
                    if delay is None:
                        delay = min(self._base_delay * (2 ** (attempt - 1)), MAX_DELAY_S)
                    self._sleep(delay)
        assert last is not None
        kind, _ = _classify(last)
        detail = self._failure_detail(last, self._http.last_network_error())
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        raise StripeUnavailable(
            f"Stripe is unreachable ({detail}){tries} while {what}; try again later.",
            stripe_message=detail,
            kind=kind or "api",
            http_status=last.http_status,
            code=getattr(last, "code", None),
            may_have_succeeded=write and reached,
        ) from None

    def _failure_detail(self, exc: stripe.StripeError, network: Exception | None) -> str:
        """A few words on the failure, never the SDK's multi-line text."""
        if exc.http_status:
            body: dict[str, Any] = exc.json_body if isinstance(exc.json_body, dict) else {}
            error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
            said = " ".join(str(error.get("message") or "").split())[:200]
            return f"HTTP {exc.http_status}: {self._scrub(said)}" if said else f"HTTP {exc.http_status}"
        if network is not None and _never_sent(network):
            return f"cannot connect to {self.api_base}"
        if network is not None and "Timeout" in type(network).__name__:
            return f"no answer from {self.api_base} in time"
        return f"connection to {self.api_base} failed"

    def _error(self, what: str, exc: stripe.StripeError, kind: str) -> StripeError:
        message = self._scrub(exc.user_message or type(exc).__name__)
        if kind == "authentication":
            text = f"Stripe rejected the API key while {what}: {message} (check STRIPE_SECRET_KEY)."
        else:
            text = f"Stripe error while {what}: {message}"
        return StripeError(
            text,
            stripe_message=message,
            kind=kind,
            http_status=exc.http_status,
            code=getattr(exc, "code", None),
        )

    def _scrub(self, text: str) -> str:
        """Stripe echoes a masked key in some messages; make sure ours never appears in full."""
        return text.replace(self._api_key, mask_secret(self._api_key)) if self._api_key else text


def _never_sent(error: Exception | None) -> bool:
    """A connection that was never made: the request cannot have reached Stripe."""
    if error is None:
        return False
    import requests

    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    text = repr(error)
    return isinstance(error, requests.exceptions.ConnectionError) and (
        "NewConnectionError" in text or "NameResolutionError" in text or "Connection refused" in text
    )


def _classify(exc: stripe.StripeError) -> tuple[str | None, bool]:
    for cls, kind, retryable in _KINDS:
        if isinstance(exc, cls):
            return kind, retryable
    return None, False


def _is_retryable_api_error(exc: stripe.StripeError) -> bool:
    """429, 5xx and network failures are worth another try; a 4xx APIError is not."""
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        return True
    status = exc.http_status
    return status is None or status >= 500 or status in (409, 429)


def new_idempotency_key(prefix: str) -> str:
    """A fresh key for a write that has no natural one."""
    return f"{prefix}-{uuid.uuid4()}"
