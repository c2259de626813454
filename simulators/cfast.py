"""CFAST simulator: the billing system of record (SPEC §3, field names of seed 004).

In memory and stateful. The CFAST hierarchy is customer account (level 1000) > billing point (5000) >
site / parc (9000) > service line (the MSISDN, with its subscription and one-off articles).

Routes (JSON; every route goes through `Simulator.run`, under the op name in brackets, so faults can be
injected per operation; mutating routes honour the `Idempotency-Key` header: the same key replays the
first answer, the same key with another body is a 409):

- `POST /customers` [create_customer] `{customer_name, customerReference, siret?, vat_number?}` → 201
  customer (`customerId`, `level: 1000`); 409 `customer_reference_exists` with the existing `customerId`.
- `GET /customers?customerReference=` [find_customer] → the customer or 404; `GET /customers/{customerId}`
  [get_customer].
- `POST /customers/{customerId}/billing-points` [create_billing_point] `{label, address?}` → 201
  (`billingPointId`, `level: 5000`); `GET` the same path [list_billing_points] → `{"billingPoints": [...]}`;
  `GET /billing-points/{billingPointId}` [get_billing_point].
- `POST /billing-points/{billingPointId}/sites` [create_site] `{label, parc_type}` (parc_type in fixed,
  internet, mobile, cybersecurity) → 201 (`siteId`, `level: 9000`); `GET` the same path [list_sites] →
  `{"sites": [...]}`; `GET /sites/{siteId}` [get_site].
- `POST /sites/{siteId}/services` [create_service] `{serviceLabel, lastName, firstName?, articleCode,
  articleLabel?, articlePeriodicPrice, periodicBuyPrice, startDate, hideCalledNumbers?}` → 201 service;
  409 `service_label_in_use` (with `serviceId`) while another non-terminated service has that label.
- `GET /services?serviceLabel=` [find_service] → the active service with that label (else the latest
  one) or 404; `GET /services/{serviceId}` [get_service] → service with `subscriptions`,
  `oneOffArticles` and `history` (events `created`, `subscription_changed`, `one_off_article_added`,
  `one_off_article_cancelled`, `terminated`).
- `POST /services/{serviceId}/subscriptions` [change_subscription] `{articleCode, articleLabel?,
  articlePeriodicPrice, periodicBuyPrice, startDate}`: the new subscription becomes active, the previous
  one ends at `startDate`.
- `POST /services/{serviceId}/one-off-articles` [add_one_off_article] `{articleCode, label, quantity,
  unitPrice, reference, unitBuyPrice?}` → 201 article line (`articleLineId`, `totalPrice`); 409
  `duplicate_reference` (with `articleLineId`) when an uncancelled article of the service has that
  reference; 409 `service_terminated`.
- `DELETE /services/{serviceId}/one-off-articles/{articleLineId}` [cancel_one_off_article] → the article
  line, `status: cancelled` (cancelling twice is fine).
- `POST /services/{serviceId}/termination` [terminate_service] `{terminationDate}` → the terminated
  service (terminating again returns it unchanged).

Amounts are integers in minor units (cents). Errors: 422 `{"error": "validation", "message", "fields"}`,
404 `{"error": "not_found", ...}`, 409 `{"error": <code>, ...}`. Test contract: see `simulators._sim`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from starlette.responses import Response
from stdnum.eu import vat
from stdnum.fr import siret

from simulators._sim import Simulator

SYSTEM = "cfast"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
ServiceLabel = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9]{9,15}$")]
MinorAmount = Annotated[int, Field(strict=True, ge=0, le=100_000_000)]
ParcType = Literal["fixed", "internet", "mobile", "cybersecurity"]


def _now() -> datetime:
    return datetime.now(UTC)


class ApiError(Exception):
    def __init__(self, status_code: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{kind} {ident!r} not found", kind=kind, id=ident)


def validation_error(fields: list[dict[str, str]]) -> ApiError:
    message = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
    return ApiError(422, "validation", message, fields=fields)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "reason": err["msg"]} for err in exc.errors()
        ]
        raise validation_error(fields) from exc


# --- requests -------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(_In):
    customer_name: Text
    customerReference: Code
    siret: str | None = None
    vat_number: str | None = None

    @field_validator("siret")
    @classmethod
    def _siret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not siret.is_valid(value):
            raise ValueError("invalid SIRET")
        return str(siret.compact(value))

    @field_validator("vat_number")
    @classmethod
    def _vat(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not vat.is_valid(value):
            raise ValueError("invalid VAT number")
        return str(vat.compact(value))


class BillingPointIn(_In):
    label: Text
    address: Annotated[str, StringConstraints(max_length=500)] | None = None


class SiteIn(_In):
    label: Text
    parc_type: ParcType


class SubscriptionIn(_In):
    articleCode: Code
    articleLabel: Text | None = None
    articlePeriodicPrice: MinorAmount
    periodicBuyPrice: MinorAmount
    startDate: date


class ServiceIn(SubscriptionIn):
    serviceLabel: ServiceLabel
    lastName: Text
    firstName: Text | None = None
    hideCalledNumbers: bool = True


class OneOffArticleIn(_In):
    articleCode: Code
    label: Text
    quantity: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    unitPrice: MinorAmount
    unitBuyPrice: MinorAmount | None = None
    reference: Code


class TerminationIn(_In):
    terminationDate: date


# --- state ----------------------------------------------------------------------------------------------


class Customer(BaseModel):
    customerId: str
    customer_name: str
    customerReference: str
    siret: str | None
    vat_number: str | None
    level: int = 1000
    status: str = "active"
    createdAt: datetime


class BillingPoint(BaseModel):
    billingPointId: str
    customerId: str
    label: str
    address: str | None
    level: int = 5000
    status: str = "active"
    vatRate: int = 20
    billingPeriodicity: str = "monthly"
    createdAt: datetime


class Site(BaseModel):
    siteId: str
    billingPointId: str
    customerId: str
    label: str
    parc_type: ParcType
    level: int = 9000
    status: str = "active"
    createdAt: datetime


class Subscription(BaseModel):
    articleCode: str
    articleLabel: str | None
    articlePeriodicPrice: int
    periodicBuyPrice: int
    startDate: date
    endDate: date | None = None
    status: Literal["active", "ended"] = "active"


class OneOffArticle(BaseModel):
    articleLineId: str
    serviceId: str
    articleCode: str
    label: str
    quantity: int
    unitPrice: int
    unitBuyPrice: int | None
    totalPrice: int
    reference: str
    status: Literal["active", "cancelled"] = "active"
    createdAt: datetime
    cancelledAt: datetime | None = None


class HistoryEvent(BaseModel):
    at: datetime
    event: str
    details: dict[str, Any] = Field(default_factory=dict)


class Service(BaseModel):
    serviceId: str
    serviceLabel: str
    siteId: str
    billingPointId: str
    customerId: str
    customerReference: str
    lastName: str
    firstName: str | None
    hideCalledNumbers: bool
    status: Literal["active", "terminated"] = "active"
    startDate: date
    terminationDate: date | None = None
    subscriptions: list[Subscription]
    oneOffArticles: list[OneOffArticle] = Field(default_factory=list)
    history: list[HistoryEvent] = Field(default_factory=list)
    createdAt: datetime

    def active_subscription(self) -> Subscription:
        for sub in reversed(self.subscriptions):
            if sub.status == "active":
                return sub
        return self.subscriptions[-1]

    def view(self) -> dict[str, Any]:
        """The GET answer: the service, its current subscription flattened (seed 004 names), history."""
        current = self.active_subscription()
        body = self.model_dump(mode="json")
        body.update(
            articleCode=current.articleCode,
            articleLabel=current.articleLabel,
            articlePeriodicPrice=current.articlePeriodicPrice,
            periodicBuyPrice=current.periodicBuyPrice,
        )
        return body

    def log(self, event: str, **details: Any) -> None:
        self.history.append(HistoryEvent(at=_now(), event=event, details=details))


class CfastState:
    def __init__(self) -> None:
        self.customers: dict[str, Customer] = {}
        self.billing_points: dict[str, BillingPoint] = {}
        self.sites: dict[str, Site] = {}
        self.services: dict[str, Service] = {}
        self._counters: dict[str, int] = {}

    def next_id(self, prefix: str) -> str:
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}-{self._counters[prefix]:06d}"

    def customer(self, customer_id: str) -> Customer:
        if customer_id not in self.customers:
            raise not_found("customer", customer_id)
        return self.customers[customer_id]

    def billing_point(self, billing_point_id: str) -> BillingPoint:
        if billing_point_id not in self.billing_points:
            raise not_found("billing_point", billing_point_id)
        return self.billing_points[billing_point_id]

    def site(self, site_id: str) -> Site:
        if site_id not in self.sites:
            raise not_found("site", site_id)
        return self.sites[site_id]

    def service(self, service_id: str) -> Service:
        if service_id not in self.services:
            raise not_found("service", service_id)
        return self.services[service_id]

    # --- effects ---

    def create_customer(self, data: CustomerIn) -> tuple[int, Any]:
        for existing in self.customers.values():
            if existing.customerReference == data.customerReference:
                raise ApiError(
                    409,
                    "customer_reference_exists",
                    f"customerReference {data.customerReference!r} already exists",
                    customerId=existing.customerId,
                )
        customer = Customer(
            customerId=self.next_id("CU"),
            customer_name=data.customer_name,
            customerReference=data.customerReference,
            siret=data.siret,
            vat_number=data.vat_number,
            createdAt=_now(),
        )
        self.customers[customer.customerId] = customer
        return 201, customer.model_dump(mode="json")

    def find_customer(self, reference: str | None) -> tuple[int, Any]:
        if not reference:
            raise validation_error([{"field": "customerReference", "reason": "query parameter required"}])
        for customer in self.customers.values():
            if customer.customerReference == reference:
                return 200, customer.model_dump(mode="json")
        raise not_found("customer", reference)

    def create_billing_point(self, customer_id: str, data: BillingPointIn) -> tuple[int, Any]:
        self.customer(customer_id)
        point = BillingPoint(
            billingPointId=self.next_id("BP"),
            customerId=customer_id,
            label=data.label,
            address=data.address,
            createdAt=_now(),
        )
        self.billing_points[point.billingPointId] = point
        return 201, point.model_dump(mode="json")

    def list_billing_points(self, customer_id: str) -> tuple[int, Any]:
        self.customer(customer_id)
        points = [p.model_dump(mode="json") for p in self.billing_points.values() if p.customerId == customer_id]
        return 200, {"billingPoints": points}

    def create_site(self, billing_point_id: str, data: SiteIn) -> tuple[int, Any]:
        point = self.billing_point(billing_point_id)
        site = Site(
            siteId=self.next_id("SI"),
            billingPointId=billing_point_id,
            customerId=point.customerId,
            label=data.label,
            parc_type=data.parc_type,
            createdAt=_now(),
        )
        self.sites[site.siteId] = site
        return 201, site.model_dump(mode="json")

    def list_sites(self, billing_point_id: str) -> tuple[int, Any]:
        self.billing_point(billing_point_id)
        sites = [s.model_dump(mode="json") for s in self.sites.values() if s.billingPointId == billing_point_id]
        return 200, {"sites": sites}

    def create_service(self, site_id: str, data: ServiceIn) -> tuple[int, Any]:
        site = self.site(site_id)
        for existing in self.services.values():
            if existing.serviceLabel == data.serviceLabel and existing.status != "terminated":
                raise ApiError(
                    409,
                    "service_label_in_use",
                    f"serviceLabel {data.serviceLabel!r} is already used by service {existing.serviceId}",
                    serviceId=existing.serviceId,
                )
        customer = self.customer(site.customerId)
        subscription = Subscription(
            articleCode=data.articleCode,
            articleLabel=data.articleLabel,
            articlePeriodicPrice=data.articlePeriodicPrice,
            periodicBuyPrice=data.periodicBuyPrice,
            startDate=data.startDate,
        )
        service = Service(
            serviceId=self.next_id("SV"),
            serviceLabel=data.serviceLabel,
            siteId=site.siteId,
            billingPointId=site.billingPointId,
            customerId=site.customerId,
            customerReference=customer.customerReference,
            lastName=data.lastName,
            firstName=data.firstName,
            hideCalledNumbers=data.hideCalledNumbers,
            startDate=data.startDate,
            subscriptions=[subscription],
            createdAt=_now(),
        )
        service.log(
            "created",
            articleCode=data.articleCode,
            articlePeriodicPrice=data.articlePeriodicPrice,
            periodicBuyPrice=data.periodicBuyPrice,
            startDate=data.startDate.isoformat(),
        )
        self.services[service.serviceId] = service
        return 201, service.view()

    def find_service(self, label: str | None) -> tuple[int, Any]:
        if not label:
            raise validation_error([{"field": "serviceLabel", "reason": "query parameter required"}])
        matches = [s for s in self.services.values() if s.serviceLabel == label]
        if not matches:
            raise not_found("service", label)
        active = [s for s in matches if s.status != "terminated"]
        return 200, (active or matches)[-1].view()

    def _live_service(self, service_id: str) -> Service:
        service = self.service(service_id)
        if service.status == "terminated":
            raise ApiError(409, "service_terminated", f"service {service_id} is terminated", serviceId=service_id)
        return service

    def change_subscription(self, service_id: str, data: SubscriptionIn) -> tuple[int, Any]:
        service = self._live_service(service_id)
        current = service.active_subscription()
        if data.startDate < current.startDate:
            raise validation_error(
                [{"field": "startDate", "reason": f"before the current subscription start {current.startDate}"}]
            )
        current.status = "ended"
        current.endDate = data.startDate
        service.subscriptions.append(
            Subscription(
                articleCode=data.articleCode,
                articleLabel=data.articleLabel,
                articlePeriodicPrice=data.articlePeriodicPrice,
                periodicBuyPrice=data.periodicBuyPrice,
                startDate=data.startDate,
            )
        )
        service.log(
            "subscription_changed",
            fromArticleCode=current.articleCode,
            articleCode=data.articleCode,
            articlePeriodicPrice=data.articlePeriodicPrice,
            periodicBuyPrice=data.periodicBuyPrice,
            startDate=data.startDate.isoformat(),
        )
        return 200, service.view()

    def add_one_off_article(self, service_id: str, data: OneOffArticleIn) -> tuple[int, Any]:
        service = self._live_service(service_id)
        for existing in service.oneOffArticles:
            if existing.reference == data.reference and existing.status == "active":
                raise ApiError(
                    409,
                    "duplicate_reference",
                    f"reference {data.reference!r} is already billed on service {service_id}",
                    articleLineId=existing.articleLineId,
                )
        article = OneOffArticle(
            articleLineId=self.next_id("AL"),
            serviceId=service_id,
            articleCode=data.articleCode,
            label=data.label,
            quantity=data.quantity,
            unitPrice=data.unitPrice,
            unitBuyPrice=data.unitBuyPrice,
            totalPrice=data.quantity * data.unitPrice,
            reference=data.reference,
            createdAt=_now(),
        )
        service.oneOffArticles.append(article)
        service.log(
            "one_off_article_added",
            articleLineId=article.articleLineId,
            articleCode=article.articleCode,
            quantity=article.quantity,
            totalPrice=article.totalPrice,
            reference=article.reference,
        )
        return 201, article.model_dump(mode="json")

    def cancel_one_off_article(self, service_id: str, article_line_id: str) -> tuple[int, Any]:
        service = self.service(service_id)
        for article in service.oneOffArticles:
            if article.articleLineId == article_line_id:
                if article.status != "cancelled":
                    article.status = "cancelled"
                    article.cancelledAt = _now()
                    service.log(
                        "one_off_article_cancelled",
                        articleLineId=article.articleLineId,
                        totalPrice=article.totalPrice,
                        reference=article.reference,
                    )
                return 200, article.model_dump(mode="json")
        raise not_found("one_off_article", article_line_id)

    def terminate_service(self, service_id: str, data: TerminationIn) -> tuple[int, Any]:
        service = self.service(service_id)
        if service.status == "terminated":
            return 200, service.view()
        if data.terminationDate < service.startDate:
            raise validation_error(
                [{"field": "terminationDate", "reason": f"before the service start {service.startDate}"}]
            )
        service.status = "terminated"
        service.terminationDate = data.terminationDate
        current = service.active_subscription()
        if current.status == "active":
            current.status = "ended"
            current.endDate = data.terminationDate
        service.log("terminated", terminationDate=data.terminationDate.isoformat())
        return 200, service.view()


# --- HTTP -----------------------------------------------------------------------------------------------

_INVALID_JSON = object()


async def _read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return _INVALID_JSON


def create_app() -> FastAPI:
    app = FastAPI(title="CFAST simulator", version="1")
    sim = Simulator()
    state = CfastState()

    def on_reset() -> None:
        nonlocal state
        state = CfastState()

    sim.install(app, on_reset=on_reset)
    app.state.sim = sim

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        return JSONResponse(validation_error(fields).body(), status_code=422)

    async def handle(
        request: Request,
        op: str,
        action: Callable[[Any], tuple[int, Any]],
        *,
        path: dict[str, str] | None = None,
        mutating: bool = True,
    ) -> Response:
        """Reads the body, then runs `action(body)` under the test contract, errors turned into JSON."""
        data: Any = await _read_body(request) if mutating else dict(request.query_params)
        record = {**(path or {}), **(data if isinstance(data, dict) else {"body": "<invalid json>"})}

        async def effect() -> tuple[int, Any]:
            try:
                if data is _INVALID_JSON:
                    raise validation_error([{"field": "body", "reason": "invalid JSON"}])
                return action(data)
            except ApiError as exc:
                return exc.status_code, exc.body()

        key = request.headers.get("Idempotency-Key") if mutating else None
        return await sim.run(op, effect, key=key, request=record)

    @app.post("/customers")
    async def create_customer(request: Request) -> Response:
        return await handle(request, "create_customer", lambda d: state.create_customer(parse(CustomerIn, d)))

    @app.get("/customers")
    async def find_customer(request: Request) -> Response:
        return await handle(
            request, "find_customer", lambda q: state.find_customer(q.get("customerReference")), mutating=False
        )

    @app.get("/customers/{customer_id}")
    async def get_customer(request: Request, customer_id: str) -> Response:
        return await handle(
            request,
            "get_customer",
            lambda _: (200, state.customer(customer_id).model_dump(mode="json")),
            path={"customerId": customer_id},
            mutating=False,
        )

    @app.post("/customers/{customer_id}/billing-points")
    async def create_billing_point(request: Request, customer_id: str) -> Response:
        return await handle(
            request,
            "create_billing_point",
            lambda d: state.create_billing_point(customer_id, parse(BillingPointIn, d)),
            path={"customerId": customer_id},
        )

    @app.get("/customers/{customer_id}/billing-points")
    async def list_billing_points(request: Request, customer_id: str) -> Response:
        return await handle(
            request,
            "list_billing_points",
            lambda _: state.list_billing_points(customer_id),
            path={"customerId": customer_id},
            mutating=False,
        )

    @app.get("/billing-points/{billing_point_id}")
    async def get_billing_point(request: Request, billing_point_id: str) -> Response:
        return await handle(
            request,
            "get_billing_point",
            lambda _: (200, state.billing_point(billing_point_id).model_dump(mode="json")),
            path={"billingPointId": billing_point_id},
            mutating=False,
        )

    @app.post("/billing-points/{billing_point_id}/sites")
    async def create_site(request: Request, billing_point_id: str) -> Response:
        return await handle(
            request,
            "create_site",
            lambda d: state.create_site(billing_point_id, parse(SiteIn, d)),
            path={"billingPointId": billing_point_id},
        )

    @app.get("/billing-points/{billing_point_id}/sites")
    async def list_sites(request: Request, billing_point_id: str) -> Response:
        return await handle(
            request,
            "list_sites",
            lambda _: state.list_sites(billing_point_id),
            path={"billingPointId": billing_point_id},
            mutating=False,
        )

    @app.get("/sites/{site_id}")
    async def get_site(request: Request, site_id: str) -> Response:
        return await handle(
            request,
            "get_site",
            lambda _: (200, state.site(site_id).model_dump(mode="json")),
            path={"siteId": site_id},
            mutating=False,
        )

    @app.post("/sites/{site_id}/services")
    async def create_service(request: Request, site_id: str) -> Response:
        return await handle(
            request,
            "create_service",
            lambda d: state.create_service(site_id, parse(ServiceIn, d)),
            path={"siteId": site_id},
        )

    @app.get("/services")
    async def find_service(request: Request) -> Response:
        return await handle(
            request, "find_service", lambda q: state.find_service(q.get("serviceLabel")), mutating=False
        )

    @app.get("/services/{service_id}")
    async def get_service(request: Request, service_id: str) -> Response:
        return await handle(
            request,
            "get_service",
            lambda _: (200, state.service(service_id).view()),
            path={"serviceId": service_id},
            mutating=False,
        )

    @app.post("/services/{service_id}/subscriptions")
    async def change_subscription(request: Request, service_id: str) -> Response:
        return await handle(
            request,
            "change_subscription",
            lambda d: state.change_subscription(service_id, parse(SubscriptionIn, d)),
            path={"serviceId": service_id},
        )

    @app.post("/services/{service_id}/one-off-articles")
    async def add_one_off_article(request: Request, service_id: str) -> Response:
        return await handle(
            request,
            "add_one_off_article",
            lambda d: state.add_one_off_article(service_id, parse(OneOffArticleIn, d)),
            path={"serviceId": service_id},
        )

    @app.delete("/services/{service_id}/one-off-articles/{article_line_id}")
    async def cancel_one_off_article(request: Request, service_id: str, article_line_id: str) -> Response:
        return await handle(
            request,
            "cancel_one_off_article",
            lambda _: state.cancel_one_off_article(service_id, article_line_id),
            path={"serviceId": service_id, "articleLineId": article_line_id},
        )

    @app.post("/services/{service_id}/termination")
    async def terminate_service(request: Request, service_id: str) -> Response:
        return await handle(
            request,
            "terminate_service",
            lambda d: state.terminate_service(service_id, parse(TerminationIn, d)),
            path={"serviceId": service_id},
        )

    return app
