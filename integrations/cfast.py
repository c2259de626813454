"""Typed async client for CFAST, the billing system of record (SPEC §3, field names of seed 004).

Hierarchy: customer account (level 1000) > billing point (5000) > site / parc (9000) > service line
(the MSISDN, `serviceLabel`). Amounts are integers in minor units. Every mutating method takes an
idempotency key, sent as the `Idempotency-Key` header: a retry with the same key returns the first
answer and applies nothing twice.

Errors are those of `integrations.errors` only: `TransientError` (transport, timeout, 5xx: the call may
or may not have been applied, retry with the same key), `RejectedError` (422 validation or business
refusal), `NotFoundError`, `ConflictError` (409: key reused with another body, or a state conflict; the
answer body is in `err.body`, e.g. `customerId` of the existing customer for `customer_reference_exists`,
`articleLineId` for `duplicate_reference`).
"""

from __future__ import annotations

from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from integrations._http import make_http_client, request_json
from integrations.errors import NotFoundError

SYSTEM = "cfast"

ParcType = Literal["fixed", "internet", "mobile", "cybersecurity"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CfastCustomer(_Model):
    customer_id: str = Field(alias="customerId")
    customer_name: str
    customer_reference: str = Field(alias="customerReference")
    siret: str | None = None
    vat_number: str | None = None
    level: int = 1000
    status: str = "active"


class CfastBillingPoint(_Model):
    billing_point_id: str = Field(alias="billingPointId")
    customer_id: str = Field(alias="customerId")
    label: str
    address: str | None = None
    level: int = 5000
    status: str = "active"


class CfastSite(_Model):
    site_id: str = Field(alias="siteId")
    billing_point_id: str = Field(alias="billingPointId")
    customer_id: str = Field(alias="customerId")
    label: str
    parc_type: ParcType
    level: int = 9000
    status: str = "active"


class CfastSubscription(_Model):
    article_code: str = Field(alias="articleCode")
    article_label: str | None = Field(default=None, alias="articleLabel")
    article_periodic_price: int = Field(alias="articlePeriodicPrice")
    periodic_buy_price: int = Field(alias="periodicBuyPrice")
    start_date: date = Field(alias="startDate")
    end_date: date | None = Field(default=None, alias="endDate")
    status: Literal["active", "ended"]


class CfastOneOffArticle(_Model):
    article_line_id: str = Field(alias="articleLineId")
    service_id: str = Field(alias="serviceId")
    article_code: str = Field(alias="articleCode")
    label: str
    quantity: int
    unit_price: int = Field(alias="unitPrice")
    unit_buy_price: int | None = Field(default=None, alias="unitBuyPrice")
    total_price: int = Field(alias="totalPrice")
    reference: str
    status: Literal["active", "cancelled"]
    created_at: datetime = Field(alias="createdAt")
    cancelled_at: datetime | None = Field(default=None, alias="cancelledAt")


class CfastHistoryEvent(_Model):
    at: datetime
    event: str
    details: dict[str, Any] = Field(default_factory=dict)


class CfastService(_Model):
    """A service line with its current subscription flattened, its subscription history and events."""

    service_id: str = Field(alias="serviceId")
    service_label: str = Field(alias="serviceLabel")
    site_id: str = Field(alias="siteId")
    billing_point_id: str = Field(alias="billingPointId")
    customer_id: str = Field(alias="customerId")
    customer_reference: str = Field(alias="customerReference")
    last_name: str = Field(alias="lastName")
    first_name: str | None = Field(default=None, alias="firstName")
    hide_called_numbers: bool = Field(default=True, alias="hideCalledNumbers")
    status: Literal["active", "terminated"]
    start_date: date = Field(alias="startDate")
    termination_date: date | None = Field(default=None, alias="terminationDate")
    article_code: str = Field(alias="articleCode")
    article_label: str | None = Field(default=None, alias="articleLabel")
    article_periodic_price: int = Field(alias="articlePeriodicPrice")
    periodic_buy_price: int = Field(alias="periodicBuyPrice")
    subscriptions: tuple[CfastSubscription, ...] = ()
    one_off_articles: tuple[CfastOneOffArticle, ...] = Field(default=(), alias="oneOffArticles")
    history: tuple[CfastHistoryEvent, ...] = ()

    def one_off_article(self, reference: str) -> CfastOneOffArticle | None:
        """The uncancelled one-off article billed under `reference` (e.g. a top-up id), if any."""
        for article in self.one_off_articles:
            if article.reference == reference and article.status == "active":
                return article
        return None


def _seg(value: str) -> str:
    """One path segment: ids are quoted so that no value can change the route."""
    return quote(value, safe="")


class CfastClient:
    def __init__(
        self, base_url: str, timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = make_http_client(base_url, timeout_s, transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        return await request_json(
            self._http, SYSTEM, method, path, json=json, params=params, idempotency_key=idempotency_key
        )

    # --- customer accounts (1000) ---

    async def create_customer(
        self,
        *,
        customer_name: str,
        customer_reference: str,
        idempotency_key: str,
        siret: str | None = None,
        vat_number: str | None = None,
    ) -> CfastCustomer:
        payload: dict[str, Any] = {"customer_name": customer_name, "customerReference": customer_reference}
        if siret is not None:
            payload["siret"] = siret
        if vat_number is not None:
            payload["vat_number"] = vat_number
        body = await self._call("POST", "/customers", json=payload, idempotency_key=idempotency_key)
        return CfastCustomer.model_validate(body)

    async def get_customer(self, customer_id: str) -> CfastCustomer:
        return CfastCustomer.model_validate(await self._call("GET", f"/customers/{_seg(customer_id)}"))

    async def find_customer_by_reference(self, customer_reference: str) -> CfastCustomer | None:
        try:
            body = await self._call("GET", "/customers", params={"customerReference": customer_reference})
        except NotFoundError:
            return None
        return CfastCustomer.model_validate(body)

    # --- billing points (5000) ---

    async def create_billing_point(
        self, customer_id: str, *, label: str, idempotency_key: str, address: str | None = None
    ) -> CfastBillingPoint:
        payload: dict[str, Any] = {"label": label}
        if address is not None:
            payload["address"] = address
        body = await self._call(
            "POST", f"/customers/{_seg(customer_id)}/billing-points", json=payload, idempotency_key=idempotency_key
        )
        return CfastBillingPoint.model_validate(body)

    async def list_billing_points(self, customer_id: str) -> list[CfastBillingPoint]:
        body = await self._call("GET", f"/customers/{_seg(customer_id)}/billing-points")
        return [CfastBillingPoint.model_validate(item) for item in body["billingPoints"]]

    async def get_billing_point(self, billing_point_id: str) -> CfastBillingPoint:
        return CfastBillingPoint.model_validate(await self._call("GET", f"/billing-points/{_seg(billing_point_id)}"))

    # --- sites / parcs (9000) ---

    async def create_site(
        self, billing_point_id: str, *, label: str, parc_type: ParcType, idempotency_key: str
    ) -> CfastSite:
        body = await self._call(
            "POST",
            f"/billing-points/{_seg(billing_point_id)}/sites",
            json={"label": label, "parc_type": parc_type},
            idempotency_key=idempotency_key,
        )
        return CfastSite.model_validate(body)

    async def list_sites(self, billing_point_id: str) -> list[CfastSite]:
        body = await self._call("GET", f"/billing-points/{_seg(billing_point_id)}/sites")
        return [CfastSite.model_validate(item) for item in body["sites"]]

    async def get_site(self, site_id: str) -> CfastSite:
        return CfastSite.model_validate(await self._call("GET", f"/sites/{_seg(site_id)}"))

    # --- service lines ---

    async def create_service(
        self,
        site_id: str,
        *,
        service_label: str,
        last_name: str,
        article_code: str,
        article_periodic_price: int,
        periodic_buy_price: int,
        start_date: date,
        idempotency_key: str,
        first_name: str | None = None,
        article_label: str | None = None,
        hide_called_numbers: bool = True,
    ) -> CfastService:
        payload: dict[str, Any] = {
            "serviceLabel": service_label,
            "lastName": last_name,
            "articleCode": article_code,
            "articlePeriodicPrice": article_periodic_price,
            "periodicBuyPrice": periodic_buy_price,
            "startDate": start_date.isoformat(),
            "hideCalledNumbers": hide_called_numbers,
        }
        if first_name is not None:
            payload["firstName"] = first_name
        if article_label is not None:
            payload["articleLabel"] = article_label
        body = await self._call(
            "POST", f"/sites/{_seg(site_id)}/services", json=payload, idempotency_key=idempotency_key
        )
        return CfastService.model_validate(body)

    async def get_service(self, service_id: str) -> CfastService:
        return CfastService.model_validate(await self._call("GET", f"/services/{_seg(service_id)}"))

    async def find_service_by_label(self, service_label: str) -> CfastService | None:
        """The non-terminated service with this label (MSISDN), else the latest terminated one, else None."""
        try:
            body = await self._call("GET", "/services", params={"serviceLabel": service_label})
        except NotFoundError:
            return None
        return CfastService.model_validate(body)

    async def change_subscription(
        self,
        service_id: str,
        *,
        article_code: str,
        article_periodic_price: int,
        periodic_buy_price: int,
        start_date: date,
        idempotency_key: str,
        article_label: str | None = None,
    ) -> CfastService:
        payload: dict[str, Any] = {
            "articleCode": article_code,
            "articlePeriodicPrice": article_periodic_price,
            "periodicBuyPrice": periodic_buy_price,
            "startDate": start_date.isoformat(),
        }
        if article_label is not None:
            payload["articleLabel"] = article_label
        body = await self._call(
            "POST", f"/services/{_seg(service_id)}/subscriptions", json=payload, idempotency_key=idempotency_key
        )
        return CfastService.model_validate(body)

    async def add_one_off_article(
        self,
        service_id: str,
        *,
        article_code: str,
        label: str,
        quantity: int,
        unit_price: int,
        reference: str,
        idempotency_key: str,
        unit_buy_price: int | None = None,
    ) -> CfastOneOffArticle:
        payload: dict[str, Any] = {
            "articleCode": article_code,
            "label": label,
            "quantity": quantity,
            "unitPrice": unit_price,
            "reference": reference,
        }
        if unit_buy_price is not None:
            payload["unitBuyPrice"] = unit_buy_price
        body = await self._call(
            "POST", f"/services/{_seg(service_id)}/one-off-articles", json=payload, idempotency_key=idempotency_key
        )
        return CfastOneOffArticle.model_validate(body)

    async def cancel_one_off_article(
        self, service_id: str, article_line_id: str, *, idempotency_key: str
    ) -> CfastOneOffArticle:
        """Cancels a one-off article line (e.g. refunds an "on account" top-up); cancelling twice is fine."""
        body = await self._call(
            "DELETE",
            f"/services/{_seg(service_id)}/one-off-articles/{_seg(article_line_id)}",
            idempotency_key=idempotency_key,
        )
        return CfastOneOffArticle.model_validate(body)

    async def terminate_service(self, service_id: str, *, termination_date: date, idempotency_key: str) -> CfastService:
        """Terminates the service line; terminating an already terminated service returns it unchanged."""
        body = await self._call(
            "POST",
            f"/services/{_seg(service_id)}/termination",
            json={"terminationDate": termination_date.isoformat()},
            idempotency_key=idempotency_key,
        )
        return CfastService.model_validate(body)
