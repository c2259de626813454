"""Database side effects of the SIM lifecycle: SIM reservation, numbers, line rows and their statuses,
deployments. Every status change goes through the status machines (`domain.sim_status`,
`domain.line_status`) and writes the journals; every write is idempotent (conditional updates, keys).

Every id an activity receives from its workflow's input (and so, at the start, from an API caller) is
checked against the tenant the workflow runs for with `ensure_in_tenant` (the `authorize` of the handlers,
with the workflow's principal) before anything is read or written: an id of another organisation is a
non-retryable `resource.not_found` (`activities._errors`), and nothing changes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities._errors import translates_errors
from domain.authz import Action, TenantChain
from domain.enums import DeploymentKind, DeploymentStatus, LineStatus, SimStatus
from domain.errors import NotFound, ValidationFailed
from domain.lifecycle_contracts import (
    ActivationContext,
    AllocatedMsisdn,
    AllocateMsisdn,
    CancelScheduledTermination,
    CloseDeployment,
    CompleteTermination,
    FinalizeActivation,
    LineSnapshot,
    LoadActivation,
    LoadLine,
    LoadPlan,
    OpenDeployment,
    PlanTerms,
    RecordUsage,
    ReleaseMsisdn,
    ReleaseSim,
    ReservedSim,
    ReserveSim,
    ScheduleTermination,
    SetLinePlan,
    SetLineStatus,
)
from domain.models import (
    BillingSite,
    Company,
    Deployment,
    DeploymentItem,
    EndUser,
    Line,
    Parc,
    Plan,
    SimCard,
    SimChange,
)
from domain.security import MsisdnIndex
from domain.services import lines as line_service
from domain.services.sims import change_sim
from domain.services.tenancy import ensure_in_tenant
from workflows import activity_names as names


def plan_offer_code(plan: Plan) -> str:
    """The supplier offer of a plan; a plan without one is ordered under its own id (SNAIC prices it 0)."""
    return plan.supplier_offer_code or f"PLAN_{plan.id[:12].upper()}"


def _split_name(full_name: str) -> tuple[str | None, str]:
    parts = full_name.strip().rsplit(" ", 1)
    if len(parts) == 2:
        return parts[0], parts[1]
    return None, full_name.strip() or "-"


def _tenant(org_id: str, company_id: str | None = None) -> TenantChain:
    return TenantChain(org_id, company_id)


async def _open_deployment(session: AsyncSession, data: OpenDeployment) -> str:
    """One deployment per workflow id: a workflow id that runs again (a new activation of the SIM after a
    failed one, a new termination after a cancelled one) reopens it, with this attempt's line as an item,
    so the MAJ records of every attempt stay together."""
    await ensure_in_tenant(session, "line_id", data.line_id, _tenant(data.org_id, data.company_id))
    deployment = (
        await session.execute(select(Deployment).where(Deployment.workflow_id == data.workflow_id))
    ).scalar_one_or_none()
    if deployment is None:
        deployment = Deployment(
            org_id=data.org_id,
            company_id=data.company_id,
            kind=DeploymentKind(data.kind),
            status=DeploymentStatus.IN_PROGRESS,
            workflow_id=data.workflow_id,
            created_by=data.created_by,
        )
        session.add(deployment)
        await session.flush()
    else:
        deployment.status = DeploymentStatus.IN_PROGRESS
    item = await session.execute(
        select(DeploymentItem.id).where(
            DeploymentItem.deployment_id == deployment.id, DeploymentItem.line_id == data.line_id
        )
    )
    if item.first() is None:
        session.add(DeploymentItem(deployment_id=deployment.id, line_id=data.line_id))
    return deployment.id


@translates_errors
class InventoryActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], msisdn_index: MsisdnIndex) -> None:
        self._sessionmaker = sessionmaker
        self._msisdn_index = msisdn_index

    # --- activation ---------------------------------------------------------------------------------

    @activity.defn(name=names.INVENTORY_RESERVE_SIM)
    async def reserve_sim(self, data: ReserveSim) -> ReservedSim:
        """Holds the SIM for this activation and makes sure the line row exists (under construction)."""
        async with self._sessionmaker.begin() as session:
            company = _tenant(data.org_id, data.company_id)
            await ensure_in_tenant(session, "company_id", data.company_id, company)
            await ensure_in_tenant(session, "plan_id", data.plan_id, company, Action.READ)
            if data.end_user_id is not None:
                await ensure_in_tenant(session, "end_user_id", data.end_user_id, company)
            await ensure_in_tenant(session, "iccid", data.iccid, _tenant(data.org_id))
            line: Line | None = await ensure_in_tenant(session, "line_id", data.line_id, company, missing_ok=True)
            if line is not None and line.activation_workflow_id not in (None, data.reservation_key):
                raise ValidationFailed("line_id", "cette ligne appartient à une autre activation")
            sim = await line_service.reserve_sim(
                session,
                org_id=data.org_id,
                iccid=data.iccid,
                reservation_key=data.reservation_key,
                company_id=data.company_id,
                actor=data.actor,
            )
            if line is None:
                session.add(
                    Line(
                        id=data.line_id,
                        org_id=data.org_id,
                        company_id=data.company_id,
                        sim_id=sim.id,
                        end_user_id=data.end_user_id,
                        plan_id=data.plan_id,
                        msisdn="",
                        status=LineStatus.UNDER_CONSTRUCTION,
                        activation_workflow_id=data.reservation_key,
                    )
                )
                await session.flush()
            deployment_id = await self._deployment(session, data)
            return ReservedSim(
                sim_id=sim.id, iccid=sim.iccid, carrier=sim.carrier, is_esim=sim.is_esim, deployment_id=deployment_id
            )

    @staticmethod
    async def _deployment(session: AsyncSession, data: ReserveSim) -> str:
        """The activation's `create_line` deployment, opened with the reservation."""
        return await _open_deployment(
            session,
            OpenDeployment(
                org_id=data.org_id,
                company_id=data.company_id,
                line_id=data.line_id,
                kind=DeploymentKind.CREATE_LINE.value,
                workflow_id=data.reservation_key,
                created_by=data.actor,
            ),
        )

    @activity.defn(name=names.INVENTORY_RELEASE_SIM)
    async def release_sim(self, data: ReleaseSim) -> None:
        """Compensation of the reservation: the SIM goes back to the stock, the line row is kept as
        obsolete with the reason (history), nothing else of it remains."""
        async with self._sessionmaker.begin() as session:
            # The reservation may have failed before the SIM was held or the line written: absent is fine.
            tenant = _tenant(data.org_id)
            await ensure_in_tenant(session, "iccid", data.iccid, tenant, missing_ok=True)
            line: Line | None = await ensure_in_tenant(session, "line_id", data.line_id, tenant, missing_ok=True)
            await line_service.release_sim(
                session, iccid=data.iccid, reservation_key=data.reservation_key, actor=data.actor
            )
            if line is not None and line.status is LineStatus.UNDER_CONSTRUCTION:
                line.failure_reason = data.reason or line.failure_reason
                await line_service.change_line(
                    session, line, actor=data.actor, workflow_id=data.reservation_key, status=LineStatus.OBSOLETE
                )

    @activity.defn(name=names.INVENTORY_ALLOCATE_MSISDN)
    async def allocate_msisdn(self, data: AllocateMsisdn) -> AllocatedMsisdn:
        now = datetime.now(UTC)
        async with self._sessionmaker.begin() as session:
            line: Line | None = await ensure_in_tenant(
                session, "line_id", data.line_id, _tenant(data.org_id), missing_ok=True
            )
            if data.port_in_msisdn is not None:
                if not data.port_in_rio:
                    raise ValidationFailed("port_in.rio", "RIO obligatoire pour une portabilité")
                number = await line_service.reserve_port_in(
                    session,
                    org_id=data.org_id,
                    msisdn=data.port_in_msisdn,
                    rio=data.port_in_rio,
                    reservation_key=data.reservation_key,
                    now=now,
                )
            else:
                number = await line_service.allocate_msisdn(
                    session, org_id=data.org_id, reservation_key=data.reservation_key, now=now, requested=data.msisdn
                )
            if line is not None and line.msisdn != number.msisdn:
                line.msisdn = number.msisdn
            return AllocatedMsisdn(
                msisdn=number.msisdn,
                msisdn_hash=self._msisdn_index.of(number.msisdn),
                ported_in=number.ported_in,
                port_in_rio=data.port_in_rio.replace(" ", "").upper()
                if number.ported_in and data.port_in_rio
                else None,
            )

    @activity.defn(name=names.INVENTORY_RELEASE_MSISDN)
    async def release_msisdn(self, data: ReleaseMsisdn) -> None:
        async with self._sessionmaker.begin() as session:
            await line_service.release_msisdn(session, reservation_key=data.reservation_key)

    @activity.defn(name=names.INVENTORY_LOAD_ACTIVATION)
    async def load_activation(self, data: LoadActivation) -> ActivationContext:
        """Everything the activation sends to SNAIC, the OCS and CFAST, read once."""
        async with self._sessionmaker() as session:
            tenant = _tenant(data.org_id, data.company_id)
            company: Company = await ensure_in_tenant(session, "company_id", data.company_id, tenant, Action.READ)
            if data.line_id:
                await ensure_in_tenant(session, "line_id", data.line_id, tenant, Action.READ, missing_ok=True)
            if data.end_user_id is not None:
                await ensure_in_tenant(session, "end_user_id", data.end_user_id, tenant, Action.READ, missing_ok=True)
            plan: Plan = await ensure_in_tenant(
                session, "plan_id", data.plan_id, _tenant(company.org_id, company.id), Action.READ
            )
            site = (
                (
                    await session.execute(
                        select(BillingSite).where(BillingSite.company_id == company.id).order_by(BillingSite.created_at)
                    )
                )
                .scalars()
                .first()
            )
            if site is None:
                raise NotFound("billing_site", "l'entreprise n'a pas de site de facturation")
            parc = (
                (await session.execute(select(Parc).where(Parc.billing_site_id == site.id).order_by(Parc.created_at)))
                .scalars()
                .first()
            )
            if parc is None:
                raise NotFound("parc", "l'entreprise n'a pas de parc mobile")
            first_name: str | None = None
            last_name = company.name
            if data.end_user_id is not None:
                user = await session.get(EndUser, data.end_user_id)
                if user is not None:
                    first_name, last_name = _split_name(user.full_name)
            return ActivationContext(
                plan_name=plan.name,
                offer_code=plan_offer_code(plan),
                price_minor=plan.price_minor,
                purchase_price_minor=plan.purchase_price_minor,
                data_allowance_bytes=plan.data_allowance_bytes,
                validity_days=plan.validity_days,
                company_name=company.name,
                customer_reference=company.customer_reference,
                siret=company.siret,
                vat_number=company.vat_number,
                cfast_customer_id=company.cfast_customer_id,
                billing_site_id=site.id,
                billing_site_label=site.label,
                billing_address=site.address,
                cfast_billing_point_id=site.cfast_billing_point_id,
                parc_id=parc.id,
                parc_label=parc.label,
                parc_type=parc.parc_type.value,
                cfast_site_id=parc.cfast_site_id,
                user_last_name=last_name,
                user_first_name=first_name,
            )

    @activity.defn(name=names.INVENTORY_FINALIZE_ACTIVATION)
    async def finalize_activation(self, data: FinalizeActivation) -> None:
        """The line is active, its number assigned, the SIM `ready_for_activation` with its company,
        plan and end user; the reservation ends. Idempotent."""
        async with self._sessionmaker.begin() as session:
            tenant = _tenant(data.org_id, data.company_id)
            line: Line = await ensure_in_tenant(session, "line_id", data.line_id, tenant)
            sim: SimCard = await ensure_in_tenant(session, "iccid", data.iccid, _tenant(data.org_id))
            await ensure_in_tenant(session, "plan_id", data.plan_id, tenant, Action.READ)
            if data.end_user_id is not None:
                await ensure_in_tenant(session, "end_user_id", data.end_user_id, tenant)
            await line_service.assign_msisdn(session, reservation_key=data.reservation_key, line_id=line.id)
            line.billing_site_id = data.billing_site_id
            line.parc_id = data.parc_id
            line.plan_id = data.plan_id
            line.end_user_id = data.end_user_id
            line.next_renewal_on = data.next_renewal_on
            line.failure_reason = None
            for field in ("snaic_line_id", "ocs_account", "cfast_service_id", "cfast_service_label"):
                value = getattr(data, field)
                if value:
                    setattr(line, field, value)
            if data.deployment_id is not None:
                deployment = await session.get(Deployment, data.deployment_id)
                if deployment is not None:
                    deployment.status = DeploymentStatus.COMPLETED
            await line_service.change_line(
                session, line, actor=data.actor, workflow_id=data.workflow_id, status=LineStatus.ACTIVE
            )
            if sim.reserved_by == data.reservation_key:
                await change_sim(
                    session,
                    sim,
                    actor=data.actor,
                    status=SimStatus.READY_FOR_ACTIVATION,
                    company_id=data.company_id,
                    plan_id=data.plan_id,
                    end_user_id=data.end_user_id,
                    reserved_by=None,
                )

    # --- deployments (seed 003) -----------------------------------------------------------------------

    @activity.defn(name=names.INVENTORY_OPEN_DEPLOYMENT)
    async def open_deployment(self, data: OpenDeployment) -> str:
        """The change order the workflow executes; its MAJ records hang from it. One per workflow id."""
        async with self._sessionmaker.begin() as session:
            return await _open_deployment(session, data)

    @activity.defn(name=names.INVENTORY_CLOSE_DEPLOYMENT)
    async def close_deployment(self, data: CloseDeployment) -> None:
        async with self._sessionmaker.begin() as session:
            deployment = await session.get(Deployment, data.deployment_id)
            if deployment is not None:
                deployment.status = DeploymentStatus(data.status)

    # --- line operations ------------------------------------------------------------------------------

    @activity.defn(name=names.INVENTORY_LOAD_LINE)
    async def load_line(self, data: LoadLine) -> LineSnapshot:
        async with self._sessionmaker() as session:
            line: Line = await ensure_in_tenant(session, "line_id", data.line_id, _tenant(data.org_id), Action.READ)
            sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
            plan = await session.get(Plan, line.plan_id) if line.plan_id else None
            return LineSnapshot(
                line_id=line.id,
                org_id=line.org_id,
                company_id=line.company_id,
                status=line.status.value,
                msisdn=line.msisdn,
                msisdn_hash=self._msisdn_index.of(line.msisdn) if line.msisdn else "",
                iccid=sim.iccid if sim is not None else None,
                plan_id=line.plan_id,
                snaic_line_id=line.snaic_line_id,
                ocs_account=line.ocs_account,
                cfast_service_id=line.cfast_service_id,
                cfast_service_label=line.cfast_service_label,
                termination_scheduled_for=line_service.aware(line.termination_scheduled_for),
                plan_allowance_bytes=plan.data_allowance_bytes if plan is not None else None,
            )

    @activity.defn(name=names.INVENTORY_LOAD_PLAN)
    async def load_plan(self, data: LoadPlan) -> PlanTerms:
        async with self._sessionmaker() as session:
            plan: Plan = await ensure_in_tenant(
                session, "plan_id", data.plan_id, _tenant(data.org_id, data.company_id), Action.READ
            )
            return PlanTerms(
                plan_id=plan.id,
                name=plan.name,
                offer_code=plan_offer_code(plan),
                price_minor=plan.price_minor,
                purchase_price_minor=plan.purchase_price_minor,
                data_allowance_bytes=plan.data_allowance_bytes,
                validity_days=plan.validity_days,
            )

    @activity.defn(name=names.INVENTORY_SET_LINE_STATUS)
    async def set_line_status(self, data: SetLineStatus) -> None:
        """Line status through the machine; the SIM follows (`previous`: its status before suspension)."""
        async with self._sessionmaker.begin() as session:
            line: Line = await ensure_in_tenant(session, "line_id", data.line_id, _tenant(data.org_id))
            await line_service.change_line(
                session, line, actor=data.actor, workflow_id=data.workflow_id, status=LineStatus(data.status)
            )
            if data.sim_status is None or line.sim_id is None:
                return
            sim = await session.get(SimCard, line.sim_id)
            if sim is None:
                return
            target = await self._sim_target(session, sim, data.sim_status)
            await change_sim(session, sim, actor=data.actor, status=target)

    @staticmethod
    async def _sim_target(session: AsyncSession, sim: SimCard, wanted: str) -> SimStatus:
        if wanted != "previous":
            return SimStatus(wanted)
        if sim.status is not SimStatus.SUSPENDED:
            return sim.status
        query = (
            select(SimChange.old_value)
            .where(SimChange.sim_id == sim.id, SimChange.field == "status", SimChange.new_value == "suspended")
            .order_by(SimChange.id.desc())
            .limit(1)
        )
        before = (await session.execute(query)).scalar_one_or_none()
        return SimStatus(before) if before in ("active", "ready_for_activation") else SimStatus.ACTIVE

    @activity.defn(name=names.INVENTORY_SET_LINE_PLAN)
    async def set_line_plan(self, data: SetLinePlan) -> None:
        async with self._sessionmaker.begin() as session:
            line: Line = await ensure_in_tenant(session, "line_id", data.line_id, _tenant(data.org_id))
            await ensure_in_tenant(session, "plan_id", data.plan_id, _tenant(line.org_id, line.company_id), Action.READ)
            await line_service.change_line(
                session, line, actor=data.actor, workflow_id=data.workflow_id, plan_id=data.plan_id
            )
            if line.sim_id is not None:
                sim = await session.get(SimCard, line.sim_id)
                if sim is not None:
                    await change_sim(session, sim, actor=data.actor, plan_id=data.plan_id)

    # --- deprovisioning -------------------------------------------------------------------------------

    @activity.defn(name=names.INVENTORY_SCHEDULE_TERMINATION)
    async def schedule_termination(self, data: ScheduleTermination) -> None:
        """Closes the top-up gate at once and records when the line will be terminated."""
        async with self._sessionmaker.begin() as session:
            line: Line = await ensure_in_tenant(session, "line_id", data.line_id, _tenant(data.org_id))
            if line.status is LineStatus.TERMINATED:
                return
            line.termination_workflow_id = data.workflow_id
            await line_service.change_line(
                session, line, actor=data.actor, workflow_id=data.workflow_id, termination_scheduled_for=data.at
            )

    @activity.defn(name=names.INVENTORY_CANCEL_TERMINATION)
    async def cancel_scheduled_termination(self, data: CancelScheduledTermination) -> None:
        async with self._sessionmaker.begin() as session:
            line: Line | None = await ensure_in_tenant(
                session, "line_id", data.line_id, _tenant(data.org_id), missing_ok=True
            )
            if line is None or line.status is LineStatus.TERMINATED:
                return
            await line_service.change_line(
                session, line, actor=data.actor, workflow_id=data.workflow_id, termination_scheduled_for=None
            )

    @activity.defn(name=names.INVENTORY_COMPLETE_TERMINATION)
    async def complete_termination(self, data: CompleteTermination) -> None:
        """Line terminated, SIM terminated, number in quarantine; the rows stay (history). Idempotent."""
        async with self._sessionmaker.begin() as session:
            line: Line = await ensure_in_tenant(session, "line_id", data.line_id, _tenant(data.org_id))
            if line.status is not LineStatus.TERMINATED:
                line.terminated_at = data.terminated_at
                await line_service.change_line(
                    session, line, actor=data.actor, workflow_id=data.workflow_id, status=LineStatus.TERMINATED
                )
            await line_service.quarantine_msisdn(session, line_id=line.id, until=data.quarantine_until)
            if line.sim_id is not None:
                sim = await session.get(SimCard, line.sim_id)
                if sim is not None and sim.status is not SimStatus.TERMINATED:
                    await change_sim(session, sim, actor=data.actor, status=SimStatus.TERMINATED, reserved_by=None)

    @activity.defn(name=names.INVENTORY_RECORD_USAGE)
    async def record_usage(self, data: RecordUsage) -> bool:
        async with self._sessionmaker.begin() as session:
            sim: SimCard = await ensure_in_tenant(session, "iccid", data.iccid, _tenant(data.org_id))
            return await line_service.record_sim_usage(
                session,
                sim,
                actor=data.actor,
                remaining_bytes=data.remaining_bytes,
                remaining_days=data.remaining_days,
                used=data.used,
            )
