"""Stand-ins for the activities of `CfastCustomerWorkflow`, registered under the real activity names.

They are fakes, not mocks: they hand out ids like CFAST would, keep MAJ records unique by reference like the
database does, record every call (with its attempt number), and fail on demand — a non-retryable rejection
or a number of transient failures at a given step. Shared by the workflow tests and the replay recorder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.contracts import (
    CfastCustomerInput,
    EnsureCfastBillingPoint,
    EnsureCfastCustomer,
    EnsureCfastSite,
    ExternalCallResult,
    MarkCfastFailed,
    SaveCfastIds,
    UpdateRecordInput,
)
from workflows import activity_names as names

# The workflow's step names, which are also the MAJ records' `operation`.
STEPS = ("create_customer", "create_billing_point", "create_site")
IDS = {"create_customer": "CUS-1000", "create_billing_point": "BP-5000", "create_site": "SITE-9000"}
REJECTION = "CFAST a refusé la demande : SIRET inconnu du registre"


def customer_input(org_id: str = "org-1", company_id: str = "company-1") -> CfastCustomerInput:
    return CfastCustomerInput(
        org_id=org_id,
        company_id=company_id,
        customer_name="Transports Dupont",
        customer_reference="ORG1-0A1B2C3D",
        siret="73282932000074",
        vat_number="FR44732829320",
        billing_site_id="site-1",
        billing_site_label="Transports Dupont — facturation",
        billing_address="1 rue de la Paix, 75002 Paris",
        parc_id="parc-1",
        parc_label="Transports Dupont — mobile",
    )


@dataclass
class Call:
    step: str
    data: Any
    attempt: int


@dataclass
class FakeCfast:
    """CFAST as the workflow sees it through `cfast.ensure_*`."""

    reject_at: str | None = None
    transient_failures: dict[str, int] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)  # hold a step until the event is set
    calls: list[Call] = field(default_factory=list)
    entered: dict[str, asyncio.Event] = field(default_factory=lambda: {s: asyncio.Event() for s in STEPS})

    def attempts(self, step: str) -> int:
        return sum(1 for c in self.calls if c.step == step)

    async def _answer(self, step: str, data: Any) -> ExternalCallResult:
        attempt = activity.info().attempt
        self.calls.append(Call(step, data, attempt))
        self.entered[step].set()
        if step in self.gates:
            await self.gates[step].wait()
        if step == self.reject_at:
            raise ApplicationError(
                REJECTION, {"system": "cfast", "code": "rejected"}, type="cfast.rejected", non_retryable=True
            )
        if attempt <= self.transient_failures.get(step, 0):
            raise ApplicationError("CFAST indisponible (503)", type="cfast.unavailable", non_retryable=False)
        return ExternalCallResult(
            object_id=IDS[step],
            sent=data.model_dump(exclude={"idempotency_key"}),
            answer={"id": IDS[step], "attempt": attempt},
        )

    @activity.defn(name=names.CFAST_ENSURE_CUSTOMER)
    async def ensure_customer(self, data: EnsureCfastCustomer) -> ExternalCallResult:
        return await self._answer("create_customer", data)

    @activity.defn(name=names.CFAST_ENSURE_BILLING_POINT)
    async def ensure_billing_point(self, data: EnsureCfastBillingPoint) -> ExternalCallResult:
        return await self._answer("create_billing_point", data)

    @activity.defn(name=names.CFAST_ENSURE_SITE)
    async def ensure_site(self, data: EnsureCfastSite) -> ExternalCallResult:
        return await self._answer("create_site", data)

    def activities(self) -> list[Callable[..., Any]]:
        return [self.ensure_customer, self.ensure_billing_point, self.ensure_site]


@dataclass
class FakeRecords:
    """Our database as the workflow sees it: MAJ records (unique by reference) and the company's CFAST state."""

    records: dict[str, UpdateRecordInput] = field(default_factory=dict)
    saved: list[SaveCfastIds] = field(default_factory=list)
    failed: list[MarkCfastFailed] = field(default_factory=list)

    @activity.defn(name=names.RECORD_UPDATE)
    async def record_update(self, data: UpdateRecordInput) -> None:
        self.records.setdefault(data.reference, data)

    @activity.defn(name=names.COMPANY_SAVE_CFAST_IDS)
    async def save_cfast_ids(self, data: SaveCfastIds) -> None:
        self.saved.append(data)

    @activity.defn(name=names.COMPANY_MARK_CFAST_FAILED)
    async def mark_cfast_failed(self, data: MarkCfastFailed) -> None:
        self.failed.append(data)

    def in_order(self) -> Sequence[UpdateRecordInput]:
        return list(self.records.values())

    def activities(self) -> list[Callable[..., Any]]:
        return [self.record_update, self.save_cfast_ids, self.mark_cfast_failed]
