"""Stripe gateway: customers, saved cards, off-session charges, refunds, webhook verification.

Built on the official SDK (`stripe.StripeClient`, async methods) with the SDK's own retries off: Temporal
retries, and every mutating call carries an idempotency key derived from the step's key, so a retry
after a lost answer gets Stripe's stored answer instead of a second charge.

Stripe per organisation: every call takes `account`, the organisation's connected account (`acct_…`),
sent as the `Stripe-Account` header with the platform's key, so its customers, cards, charges and refunds
live in that account; None is the platform's own account.

Error mapping (once, here): `CardError` → `PaymentDeclinedError`; `IdempotencyError` → `ConflictError`;
`InvalidRequestError` → `RejectedError` (`NotFoundError` on 404); authentication/permission →
`RejectedError`; connection failures, timeouts, rate limits and 5xx → `TransientError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

import httpx
import stripe
from pydantic import BaseModel, ConfigDict

from integrations.errors import ConflictError, DeclinedError, NotFoundError, RejectedError, TransientError

SYSTEM: Final = "stripe"

# Test card helper: a card number is turned into a PaymentMethod (`4242424242424242` succeeds;
# `4000000000000341` attaches, then every charge is declined). Real Stripe wants tokens (`pm_card_visa`).
TEST_CARD_EXPIRY: Final = {"exp_month": 12, "exp_year": 2034, "cvc": "123"}


class PaymentDeclinedError(DeclinedError):
    """The card was declined (or needs the cardholder, impossible off-session)."""

    def __init__(
        self,
        message: str,
        *,
        payment_intent_id: str | None,
        decline_code: str | None,
        status_code: int | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(SYSTEM, decline_code or "card_declined", message, status_code=status_code, body=body)
        self.payment_intent_id = payment_intent_id
        self.decline_code = decline_code


class WebhookSignatureError(RejectedError):
    """A webhook whose signature (or payload) does not verify."""


class Customer(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer_id: str
    email: str | None = None
    name: str | None = None


class SavedCard(BaseModel):
    model_config = ConfigDict(frozen=True)

    payment_method_id: str
    customer_id: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


class SetupIntentResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    setup_intent_id: str
    status: str  # requires_payment_method | requires_action | succeeded | canceled | …
    customer_id: str | None
    payment_method_id: str | None
    client_secret: str | None = None


class PaymentResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    payment_intent_id: str
    status: str  # succeeded | processing | requires_payment_method | requires_confirmation | …
    amount_minor: int
    currency: str
    decline_code: str | None = None


class RefundResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    refund_id: str
    payment_intent_id: str | None
    status: str
    amount_minor: int
    currency: str


class _ContentHTTPXClient(stripe.HTTPXClient):
    """`stripe.HTTPXClient` passes the encoded form body as `data=<str>`, which httpx ≥ 0.28 deprecates
    (DeprecationWarning: "Use 'content=<...>'"); the SDK's own catch-all would then turn the warning,
    raised as an error under `filterwarnings=error`, into an APIConnectionError. Same request, sent as
    `content=`."""

    def _get_request_args_kwargs(self, method: str, url: str, headers: Mapping[str, str], post_data: Any) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if isinstance(data, str | bytes) and data:
            kwargs["content"] = data
        elif data:
            kwargs["data"] = data
        return [args, kwargs]


class StripeGateway:
    def __init__(self, api_key: str, api_base: str, timeout_s: float) -> None:
        self._http_client = _ContentHTTPXClient(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)))
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            http_client=self._http_client,
            max_network_retries=0,
        )

    async def aclose(self) -> None:
        await self._http_client.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK

    async def __aenter__(self) -> StripeGateway:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- customers and cards ----------------------------------------------------------------------

    async def ensure_customer(
        self,
        email: str,
        name: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
        account: str | None = None,
    ) -> Customer:
        """The customer with this email whose metadata holds all of `metadata` (e.g. our org id), else a
        new one created under `idempotency_key`, so concurrent or retried calls make one customer."""
        try:
            found = await self._client.v1.customers.list_async(
                params={"email": email, "limit": 100}, options=_options(account)
            )
            for candidate in found.data:
                held: dict[str, Any] = candidate.metadata.to_dict() if candidate.metadata else {}
                if all(held.get(k) == v for k, v in metadata.items()):
                    return _customer(candidate)
            params: dict[str, Any] = {"email": email, "metadata": dict(metadata)}
            if name:
                params["name"] = name
            created = await self._client.v1.customers.create_async(
                params=params,  # type: ignore[arg-type]
                options=_options(account, idempotency_key),
            )
        except stripe.StripeError as exc:
            _raise_mapped(exc)
        return _customer(created)

    async def create_customer(
        self,
        name: str,
        email: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
        account: str | None = None,
    ) -> Customer:
        """A new customer; the key comes from the owner (company or end user), so a retried or concurrent
        call makes one customer."""
        params: dict[str, Any] = {"name": name, "metadata": dict(metadata)}
        if email:
            params["email"] = email
        try:
            created = await self._client.v1.customers.create_async(
                params=params,  # type: ignore[arg-type]
                options=_options(account, idempotency_key),
            )
        except stripe.StripeError as exc:
            _raise_mapped(exc)
        return _customer(created)

    async def create_setup_intent(
        self, customer_id: str, metadata: Mapping[str, str], account: str | None = None
    ) -> SetupIntentResult:
        """A SetupIntent to save a card for later off-session charges; the browser confirms it with
        Stripe.js and its `client_secret`. Moves no money: a new one per form, no idempotency key."""
        try:
            intent = await self._client.v1.setup_intents.create_async(
                params={
                    "customer": customer_id,
                    "usage": "off_session",
                    "payment_method_types": ["card"],
                    "metadata": dict(metadata),
                },  # type: ignore[arg-type]
                options=_options(account),
            )
        except stripe.StripeError as exc:
            _raise_mapped(exc)
        return _setup_intent(intent, with_secret=True)

    async def retrieve_setup_intent(self, setup_intent_id: str, account: str | None = None) -> SetupIntentResult:
        try:
            intent = await self._client.v1.setup_intents.retrieve_async(setup_intent_id, options=_options(account))
        except stripe.StripeError as exc:
            _raise_mapped(exc)
        return _setup_intent(intent)

    async def retrieve_card(self, payment_method_id: str, account: str | None = None) -> SavedCard:
        """The card and the customer it is attached to (`customer_id` empty when attached to none)."""
        try:
            method = await self._client.v1.payment_methods.retrieve_async(payment_method_id, options=_options(account))
        except stripe.StripeError as exc:
            _raise_mapped(exc)
        return _saved_card(method, _object_id(_field(method, "customer")) or "")

    async def detach_card(self, payment_method_id: str, account: str | None = None) -> None:
        """Removes the card from its customer: it can no longer be charged."""
        try:
            await self._client.v1.payment_methods.detach_async(payment_method_id, options=_options(account))
        except stripe.StripeError as exc:
            _raise_mapped(exc)

    async def attach_card(
        self, customer_id: str, card: str, idempotency_key: str, account: str | None = None
    ) -> SavedCard:
        """Saves a card on the customer. `card` is a PaymentMethod id or test token (`pm_card_visa`,
        `pm_card_chargeCustomerFail`), or a test card number made into a PaymentMethod first.
        A card refused at attach raises PaymentDeclinedError (no PaymentIntent)."""
        try:
            payment_method_id = card
            if not card.startswith("pm_"):
                number = card.replace(" ", "")
                created = await self._client.v1.payment_methods.create_async(
                    params={"type": "card", "card": {"number": number, **TEST_CARD_EXPIRY}},  # type: ignore[arg-type]
                    options=_options(account, f"{idempotency_key}:create"),
                )
                payment_method_id = created.id
            attached = await self._client.v1.payment_methods.attach_async(
                payment_method_id,
                params={"customer": customer_id},
                options=_options(account, f"{idempotency_key}:attach"),
            )
        except stripe.StripeError as exc:
            _raise_mapped(exc)
        return _saved_card(attached, customer_id)

    # -- payments ---------------------------------------------------------------------------------

    async def charge_off_session(
        self,
        customer_id: str,
        payment_method_id: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
        account: str | None = None,
    ) -> PaymentResult:
        """Charges a saved card without the cardholder: create the PaymentIntent (key `{k}:create`),
        then confirm it off-session (key `{k}:confirm`). Two steps so a decline still names the
        PaymentIntent; a retry with the same key replays both answers (one PaymentIntent, one charge).
        Raises PaymentDeclinedError on a decline or when the bank asks for authentication."""
        payment_intent_id: str | None = None
        try:
            created = await self._create_intent(
                customer_id, payment_method_id, amount_minor, currency, idempotency_key, metadata, account
            )
            payment_intent_id = created.id
            intent = await self._client.v1.payment_intents.confirm_async(
                created.id,
                params={"off_session": True},
                options=_options(account, f"{idempotency_key}:confirm"),
            )
        except stripe.StripeError as exc:
            _raise_mapped(exc, payment_intent_id=payment_intent_id)
        result = _payment_result(intent)
        if intent.status == "requires_action":
            raise PaymentDeclinedError(
                "the card needs authentication, impossible off-session",
                payment_intent_id=intent.id,
                decline_code="authentication_required",
            )
        if intent.status in ("requires_payment_method", "canceled"):
            raise PaymentDeclinedError(
                f"payment {intent.id} ended {intent.status}",
                payment_intent_id=intent.id,
                decline_code=result.decline_code,
            )
        return result

    async def _create_intent(
        self,
        customer_id: str,
        payment_method_id: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        metadata: Mapping[str, str] | None,
        account: str | None,
    ) -> stripe.PaymentIntent:
        return await self._client.v1.payment_intents.create_async(
            params={
                "amount": amount_minor,
                "currency": currency.lower(),
                "customer": customer_id,
                "payment_method": payment_method_id,
                "metadata": dict(metadata or {}),
            },
            options=_options(account, f"{idempotency_key}:create"),
        )

    async def find_charge(
        self, customer_id: str, topup_id: str, account: str | None = None, *, metadata_key: str = "topup_id"
    ) -> PaymentResult | None:
        """The succeeded charge of a top-up (or of what `metadata_key` names: `wallet_funding_id`), found
        among the customer's PaymentIntents by that id in their metadata (what `charge_off_session` sets).
        None only when the listing shows that none of them succeeded; one still `processing` raises
        TransientError (ask again later). Never replays the create: once Stripe has forgotten the key
        (24 h), that would make a new, unconfirmed PaymentIntent and hide the charge."""
        pending: str | None = None
        try:
            params: dict[str, Any] = {"customer": customer_id, "limit": 100}
            while True:
                page = await self._client.v1.payment_intents.list_async(
                    params=params,  # type: ignore[arg-type]
                    options=_options(account),
                )
                for intent in page.data:
                    held: dict[str, Any] = intent.metadata.to_dict() if intent.metadata else {}
                    if held.get(metadata_key) != topup_id:
                        continue
                    if intent.status == "succeeded":
                        return _payment_result(intent)
                    if intent.status == "processing":
                        pending = intent.id
                if not page.has_more or not page.data:
                    break
                params["starting_after"] = page.data[-1].id
        except stripe.StripeError as exc:
            _raise_mapped(exc)
        if pending is not None:
            raise TransientError(SYSTEM, "payment_processing", f"payment {pending} of top-up {topup_id} is processing")
        return None

    async def retrieve_payment_intent(self, payment_intent_id: str, account: str | None = None) -> PaymentResult:
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(payment_intent_id, options=_options(account))
        except stripe.StripeError as exc:
            _raise_mapped(exc, payment_intent_id=payment_intent_id)
        return _payment_result(intent)

    async def refund(
        self, payment_intent_id: str, amount_minor: int | None, idempotency_key: str, account: str | None = None
    ) -> RefundResult:
        """Refunds a PaymentIntent, fully when `amount_minor` is None."""
        params: dict[str, Any] = {"payment_intent": payment_intent_id}
        if amount_minor is not None:
            params["amount"] = amount_minor
        try:
            refund = await self._client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options=_options(account, idempotency_key),
            )
        except stripe.StripeError as exc:
            _raise_mapped(exc, payment_intent_id=payment_intent_id)
        return RefundResult(
            refund_id=refund.id,
            payment_intent_id=_object_id(_field(refund, "payment_intent")) or payment_intent_id,
            status=str(refund.status),
            amount_minor=int(refund.amount),
            currency=str(refund.currency),
        )

    # -- webhooks ---------------------------------------------------------------------------------

    @staticmethod
    def verify_webhook(payload: bytes, sig_header: str | None, secret: str) -> None:
        """Checks the `Stripe-Signature` header on the raw body (5 min tolerance) without an API client."""
        try:
            stripe.WebhookSignature.verify_header(payload.decode(), sig_header or "", secret, tolerance=300)
        except stripe.SignatureVerificationError as exc:
            raise WebhookSignatureError(SYSTEM, "invalid_signature", str(exc), status_code=400) from exc
        except UnicodeDecodeError as exc:
            raise WebhookSignatureError(SYSTEM, "invalid_payload", str(exc), status_code=400) from exc

    def construct_webhook_event(self, payload: bytes, sig_header: str | None, secret: str) -> stripe.Event:
        """Verifies the `Stripe-Signature` header (HMAC-SHA256 of `{t}.{payload}`, 5 min tolerance) and
        parses the event; raises WebhookSignatureError otherwise."""
        try:
            return self._client.construct_event(payload, sig_header, secret)
        except stripe.SignatureVerificationError as exc:
            raise WebhookSignatureError(SYSTEM, "invalid_signature", str(exc), status_code=400) from exc
        except ValueError as exc:  # not JSON
            raise WebhookSignatureError(SYSTEM, "invalid_payload", str(exc), status_code=400) from exc


def _options(account: str | None, idempotency_key: str | None = None) -> Any:
    """Per-request options: the organisation's connected account, the idempotency key."""
    options: dict[str, str] = {}
    if account:
        options["stripe_account"] = account
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    return options


# -- mapping --------------------------------------------------------------------------------------


def _field(obj: Any, name: str) -> Any:
    """A field Stripe may leave out (localstripe often does): StripeObjects raise AttributeError then."""
    return getattr(obj, name, None)


def _object_id(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value.id)


def _customer(obj: stripe.Customer) -> Customer:
    return Customer(customer_id=obj.id, email=_field(obj, "email"), name=_field(obj, "name"))


def _saved_card(method: Any, customer_id: str) -> SavedCard:
    details = _field(method, "card")
    return SavedCard(
        payment_method_id=method.id,
        customer_id=customer_id,
        brand=_field(details, "brand"),
        last4=_field(details, "last4"),
        exp_month=_field(details, "exp_month"),
        exp_year=_field(details, "exp_year"),
    )


def _setup_intent(intent: Any, *, with_secret: bool = False) -> SetupIntentResult:
    return SetupIntentResult(
        setup_intent_id=intent.id,
        status=str(intent.status),
        customer_id=_object_id(_field(intent, "customer")),
        payment_method_id=_object_id(_field(intent, "payment_method")),
        client_secret=_field(intent, "client_secret") if with_secret else None,
    )


def _payment_result(intent: stripe.PaymentIntent) -> PaymentResult:
    error = _field(intent, "last_payment_error")
    decline_code = (_field(error, "decline_code") or _field(error, "code")) if error is not None else None
    return PaymentResult(
        payment_intent_id=intent.id,
        status=str(intent.status),
        amount_minor=int(intent.amount),
        currency=str(intent.currency),
        decline_code=decline_code,
    )


def _raise_mapped(exc: stripe.StripeError, *, payment_intent_id: str | None = None) -> NoReturn:
    """One place where SDK errors become `integrations.errors`."""
    status = exc.http_status
    message = exc.user_message or str(exc) or type(exc).__name__
    body = exc.json_body
    if isinstance(exc, stripe.CardError):
        decline_code = _field(exc.error, "decline_code") or exc.code
        intent_id = _object_id(_field(exc.error, "payment_intent")) or payment_intent_id
        raise PaymentDeclinedError(
            message, payment_intent_id=intent_id, decline_code=decline_code, status_code=status, body=body
        ) from exc
    if isinstance(exc, stripe.IdempotencyError):
        raise ConflictError(SYSTEM, "idempotency_error", message, status_code=status, body=body) from exc
    if isinstance(exc, stripe.InvalidRequestError):
        error_class = NotFoundError if status == 404 else RejectedError
        raise error_class(SYSTEM, exc.code or "invalid_request", message, status_code=status, body=body) from exc
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        raise RejectedError(SYSTEM, type(exc).__name__, message, status_code=status, body=body) from exc
    if isinstance(exc, stripe.APIConnectionError):
        cause = exc.__cause__
        code = "timeout" if isinstance(cause, httpx.TimeoutException) else "transport"
        raise TransientError(SYSTEM, code, message, status_code=status, body=body) from exc
    if isinstance(exc, stripe.RateLimitError) or status is None or status >= 500 or status == 409:
        raise TransientError(SYSTEM, exc.code or "api_error", message, status_code=status, body=body) from exc
    raise RejectedError(SYSTEM, exc.code or "api_error", message, status_code=status, body=body) from exc
