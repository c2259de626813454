"""CFAST side effects: a company's customer, billing point and site, the service lines of the SIM lifecycle,
and the one-off articles of top-ups. Each activity looks the object up first and creates it only when missing, so a
retry, a replay or an object created by someone else never produces a duplicate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, cast

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import external_call, translates_errors
from domain.contracts import (
    CfastArticleCancel,
    CfastArticleRequest,
    EnsureCfastBillingPoint,
    EnsureCfastCustomer,
    EnsureCfastSite,
    ExternalCallResult,
)
from domain.errors import ErrorCode
from domain.lifecycle_contracts import CfastChangeSubscription, CfastEnsureService, CfastServiceRef
from integrations.cfast import CfastClient, CfastService
from integrations.errors import ConflictError, NotFoundError
from workflows import activity_names as names

ParcType = Literal["fixed", "internet", "mobile", "cybersecurity"]


def _service_answer(service: CfastService) -> dict[str, object]:
    return {
        "serviceId": service.service_id,
        "serviceLabel": service.service_label,
        "siteId": service.site_id,
        "status": service.status,
        "articleCode": service.article_code,
        "startDate": service.start_date.isoformat(),
        "terminationDate": service.termination_date.isoformat() if service.termination_date else None,
    }


@translates_errors
class CfastActivities:
    def __init__(self, client: CfastClient) -> None:
        self._client = client

    @activity.defn(name=names.CFAST_ENSURE_CUSTOMER)
    async def ensure_customer(self, data: EnsureCfastCustomer) -> ExternalCallResult:
        sent = data.model_dump(exclude={"idempotency_key"})
        async with external_call():
            existing = await self._client.find_customer_by_reference(data.customer_reference)
            if existing is None:
                try:
                    created = await self._client.create_customer(
                        customer_name=data.customer_name,
                        customer_reference=data.customer_reference,
                        siret=data.siret,
                        vat_number=data.vat_number,
                        idempotency_key=data.idempotency_key,
                    )
                except ConflictError:
                    existing = await self._client.find_customer_by_reference(data.customer_reference)
                    if existing is None:
                        raise
                else:
                    return ExternalCallResult(
                        object_id=created.customer_id, sent=sent, answer=created.model_dump(mode="json", by_alias=True)
                    )
        return ExternalCallResult(
            object_id=existing.customer_id,
            fetched_existing=True,
            sent={"customerReference": data.customer_reference},
            answer=existing.model_dump(mode="json", by_alias=True),
        )

    @activity.defn(name=names.CFAST_ENSURE_BILLING_POINT)
    async def ensure_billing_point(self, data: EnsureCfastBillingPoint) -> ExternalCallResult:
        async with external_call():
            for point in await self._client.list_billing_points(data.customer_id):
                if point.billing_point_id == data.known_billing_point_id or point.label == data.label:
                    return ExternalCallResult(
                        object_id=point.billing_point_id,
                        fetched_existing=True,
                        sent={"customerId": data.customer_id, "label": data.label},
                        answer=point.model_dump(mode="json", by_alias=True),
                    )
            created = await self._client.create_billing_point(
                data.customer_id, label=data.label, address=data.address, idempotency_key=data.idempotency_key
            )
        return ExternalCallResult(
            object_id=created.billing_point_id,
            sent={"customerId": data.customer_id, "label": data.label, "address": data.address},
            answer=created.model_dump(mode="json", by_alias=True),
        )

    @activity.defn(name=names.CFAST_ENSURE_SITE)
    async def ensure_site(self, data: EnsureCfastSite) -> ExternalCallResult:
        async with external_call():
            for site in await self._client.list_sites(data.billing_point_id):
                if site.site_id == data.known_site_id or site.label == data.label:
                    return ExternalCallResult(
                        object_id=site.site_id,
                        fetched_existing=True,
                        sent={"billingPointId": data.billing_point_id, "label": data.label},
                        answer=site.model_dump(mode="json", by_alias=True),
                    )
            created = await self._client.create_site(
                data.billing_point_id,
                label=data.label,
                parc_type=cast(ParcType, data.parc_type),
                idempotency_key=data.idempotency_key,
            )
        return ExternalCallResult(
            object_id=created.site_id,
            sent={"billingPointId": data.billing_point_id, "label": data.label, "parc_type": data.parc_type},
            answer=created.model_dump(mode="json", by_alias=True),
        )

    # --- service lines of the SIM lifecycle -----------------------------------------------------

    @activity.defn(name=names.PROV_CFAST_ENSURE_SERVICE)
    async def cfast_ensure_service(self, data: CfastEnsureService) -> ExternalCallResult:
        """Looks the service line up by its label (the MSISDN) first: an active one on our site is
        reused (ids fetched on the fly, seed 003), one on another site is a refusal."""
        sent = data.model_dump(mode="json", exclude={"idempotency_key"})
        async with external_call():
            existing = await self._client.find_service_by_label(data.service_label)
            if existing is None or existing.status != "active":
                try:
                    created = await self._client.create_service(
                        data.site_id,
                        service_label=data.service_label,
                        last_name=data.last_name,
                        first_name=data.first_name,
                        article_code=data.article_code,
                        article_label=data.article_label,
                        article_periodic_price=data.article_periodic_price,
                        periodic_buy_price=data.periodic_buy_price,
                        start_date=data.start_date,
                        idempotency_key=data.idempotency_key,
                    )
                except ConflictError:
                    existing = await self._client.find_service_by_label(data.service_label)
                    if existing is None:
                        raise
                else:
                    return ExternalCallResult(object_id=created.service_id, sent=sent, answer=_service_answer(created))
        if existing.site_id != data.site_id:
            raise ApplicationError(
                f"CFAST service line {data.service_label} is active on another site ({existing.site_id})",
                type=ErrorCode.CFAST_SERVICE_LABEL_IN_USE,
                non_retryable=True,
            )
        return ExternalCallResult(
            object_id=existing.service_id, fetched_existing=True, sent=sent, answer=_service_answer(existing)
        )

    async def _find_ours(self, data: CfastServiceRef) -> CfastService | None:
        if data.service_id:
            try:
                return await self._client.get_service(data.service_id)
            except NotFoundError:
                return None
        found = await self._client.find_service_by_label(data.service_label)
        if found is None:
            return None
        matches = (
            (data.site_id is None or found.site_id == data.site_id)
            and (data.article_code is None or found.article_code == data.article_code)
            and (data.start_date is None or found.start_date == data.start_date)
        )
        return found if matches else None

    @activity.defn(name=names.PROV_CFAST_TERMINATE_SERVICE)
    async def cfast_terminate_service(self, data: CfastServiceRef) -> ExternalCallResult:
        """Terminates the service line (with its date); one already terminated, or never created, is left
        as it is."""
        termination_date = data.termination_date or datetime.now(UTC).date()
        sent = {
            "serviceId": data.service_id,
            "serviceLabel": data.service_label,
            "terminationDate": str(termination_date),
        }
        async with external_call():
            service = await self._find_ours(data)
            if service is None:
                return ExternalCallResult(object_id="", sent=sent, answer={"skipped": "no such service"})
            if service.status == "terminated":
                return ExternalCallResult(
                    object_id=service.service_id, fetched_existing=True, sent=sent, answer=_service_answer(service)
                )
            terminated = await self._client.terminate_service(
                service.service_id, termination_date=termination_date, idempotency_key=data.idempotency_key
            )
        return ExternalCallResult(object_id=terminated.service_id, sent=sent, answer=_service_answer(terminated))

    @activity.defn(name=names.PROV_CFAST_CHANGE_SUBSCRIPTION)
    async def cfast_change_subscription(self, data: CfastChangeSubscription) -> ExternalCallResult:
        sent = data.model_dump(mode="json", exclude={"idempotency_key"})
        async with external_call():
            current = await self._client.get_service(data.service_id)
            if current.article_code == data.article_code:  # already on that subscription: nothing to change
                return ExternalCallResult(
                    object_id=current.service_id, fetched_existing=True, sent=sent, answer=_service_answer(current)
                )
            service = await self._client.change_subscription(
                data.service_id,
                article_code=data.article_code,
                article_label=data.article_label,
                article_periodic_price=data.article_periodic_price,
                periodic_buy_price=data.periodic_buy_price,
                start_date=data.start_date,
                idempotency_key=data.idempotency_key,
            )
        return ExternalCallResult(object_id=service.service_id, sent=sent, answer=_service_answer(service))


@translates_errors
class CfastBillingActivities:
    """One-off articles on a CFAST service line: the billed record of a top-up, and its cancellation."""

    def __init__(self, client: CfastClient) -> None:
        self._client = client

    @activity.defn(name=names.CFAST_ADD_ONE_OFF_ARTICLE)
    async def add_one_off_article(self, data: CfastArticleRequest) -> ExternalCallResult:
        sent = data.model_dump(exclude={"idempotency_key"})
        async with external_call():
            try:
                article = await self._client.add_one_off_article(
                    data.cfast_service_id,
                    article_code=data.article_code,
                    label=data.label,
                    quantity=data.quantity,
                    unit_price=data.unit_price_minor,
                    unit_buy_price=data.unit_buy_price_minor,
                    reference=data.reference,
                    idempotency_key=data.idempotency_key,
                )
            except ConflictError:
                # Already billed under this reference (by an earlier attempt): that line is the answer.
                service = await self._client.get_service(data.cfast_service_id)
                existing = service.one_off_article(data.reference)
                if existing is None:
                    raise
                article = existing
        return ExternalCallResult(
            object_id=article.article_line_id, sent=sent, answer=article.model_dump(mode="json", by_alias=True)
        )

    @activity.defn(name=names.CFAST_CANCEL_ONE_OFF_ARTICLE)
    async def cancel_one_off_article(self, data: CfastArticleCancel) -> ExternalCallResult:
        """Cancels the article billed under `reference`, if there is one (compensation "if applied")."""
        sent = data.model_dump(exclude={"idempotency_key"})
        async with external_call():
            service = await self._client.get_service(data.cfast_service_id)
            existing = service.one_off_article(data.reference)
            if existing is None:
                return ExternalCallResult(object_id="", sent=sent, answer={"cancelled": False, "reason": "absent"})
            cancelled = await self._client.cancel_one_off_article(
                data.cfast_service_id, existing.article_line_id, idempotency_key=data.idempotency_key
            )
        return ExternalCallResult(
            object_id=cancelled.article_line_id, sent=sent, answer=cancelled.model_dump(mode="json", by_alias=True)
        )
