"""CFAST side effects. Each activity looks the object up first and creates it only when missing, so a
retry, a replay or an object created by someone else never produces a duplicate."""

from __future__ import annotations

from typing import Literal, cast

from temporalio import activity

from activities._errors import external_call
from domain.contracts import (
    CfastArticleCancel,
    CfastArticleRequest,
    EnsureCfastBillingPoint,
    EnsureCfastCustomer,
    EnsureCfastSite,
    ExternalCallResult,
)
from integrations.cfast import CfastClient
from integrations.errors import ConflictError
from workflows import activity_names as names

ParcType = Literal["fixed", "internet", "mobile", "cybersecurity"]


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
