"""Data of the portal tests: two organisations, their companies, staff, SIMs (one eSIM), a journal and MAJ rows.

`seed_portal(session)` takes a *sync* SQLAlchemy session, so the browser test (sync engine on the SQLite
file) and the HTTP tests (`await async_session.run_sync(seed_portal)`) share it. Every unique value carries
a random suffix, so the data can live next to other tests' data in the session database.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from domain.enums import (
    CfastSyncStatus,
    ExternalSystem,
    LineStatus,
    MajStatus,
    PlanType,
    SimStatus,
    SimType,
    StaffRole,
)
from domain.identifiers import iccid_with_check_digit
from domain.models import (
    BillingSite,
    Company,
    EndUser,
    Line,
    Organisation,
    Parc,
    Plan,
    SimCard,
    SimChange,
    StaffUser,
    UpdateRecord,
)
from domain.security import hash_password

PASSWORD = "Portail-test-2026!"
JOURNAL_AT = datetime(2026, 11, 21, 13, 5, tzinfo=UTC)  # 21/11/2026 14:05 in Paris
TEMPORAL_UI = "http://temporal-ui.test:8233"


@dataclass
class PortalSeed:
    suffix: str
    org_a: str = ""
    org_b: str = ""
    company_a1: str = ""
    company_a2: str = ""
    company_b1: str = ""
    company_a1_name: str = ""
    company_a2_name: str = ""
    company_b1_name: str = ""
    company_a1_workflow: str = ""
    staff_a: str = ""  # org staff of A
    staff_b: str = ""  # org staff of B
    staff_a1: str = ""  # company staff of A1
    end_user_a1: str = ""
    iccids: dict[str, str] = field(default_factory=dict)
    imsis: dict[str, str] = field(default_factory=dict)

    @property
    def iccids_a(self) -> list[str]:
        return sorted(v for k, v in self.iccids.items() if k.startswith("a"))


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def seed_portal(session: Session) -> PortalSeed:
    suffix = secrets.token_hex(4)
    seed = PortalSeed(suffix=suffix)
    org_a = Organisation(name=f"Alpha Télécom {suffix}", slug=f"alpha-{suffix}")
    org_b = Organisation(name=f"Bêta Mobile {suffix}", slug=f"beta-{suffix}")
    session.add_all([org_a, org_b])
    session.flush()
    seed.org_a, seed.org_b = org_a.id, org_b.id

    def company(org: Organisation, name: str, status: CfastSyncStatus, ref: str) -> Company:
        c = Company(
            org_id=org.id,
            name=name,
            customer_reference=f"T{suffix}-{ref}".upper(),
            cfast_status=status,
            siret=None,
        )
        session.add(c)
        session.flush()
        c.cfast_workflow_id = f"cfast-customer/{org.id}/{c.id}"
        site = BillingSite(org_id=org.id, company_id=c.id, label=f"{name} — facturation", cfast_billing_point_id=None)
        session.add(site)
        session.flush()
        session.add(Parc(org_id=org.id, company_id=c.id, billing_site_id=site.id, label=f"{name} — mobile"))
        return c

    a1 = company(org_a, f"Transports Dupont {suffix}", CfastSyncStatus.SYNCED, "A1")
    a1.cfast_customer_id = f"CUST-{suffix}"
    a2 = company(org_a, f"Boulangerie Martin {suffix}", CfastSyncStatus.FAILED, "A2")
    b1 = company(org_b, f"Garage Bernard {suffix}", CfastSyncStatus.PENDING, "B1")
    session.flush()
    seed.company_a1, seed.company_a2, seed.company_b1 = a1.id, a2.id, b1.id
    seed.company_a1_name, seed.company_a2_name, seed.company_b1_name = a1.name, a2.name, b1.name
    assert a1.cfast_workflow_id is not None
    seed.company_a1_workflow = a1.cfast_workflow_id

    pw = hash_password(PASSWORD)
    seed.staff_a = f"staff-a-{suffix}@alpha.test"
    seed.staff_b = f"staff-b-{suffix}@beta.test"
    seed.staff_a1 = f"staff-a1-{suffix}@dupont.test"
    seed.end_user_a1 = f"user-{suffix}@dupont.test"
    session.add_all(
        [
            StaffUser(email=seed.staff_a, password_hash=pw, role=StaffRole.ORG_STAFF, org_id=org_a.id),
            StaffUser(email=seed.staff_b, password_hash=pw, role=StaffRole.ORG_STAFF, org_id=org_b.id),
            StaffUser(
                email=seed.staff_a1, password_hash=pw, role=StaffRole.COMPANY_STAFF, org_id=org_a.id, company_id=a1.id
            ),
        ]
    )
    user = EndUser(
        org_id=org_a.id, company_id=a1.id, email=seed.end_user_a1, full_name="Jeanne Dupont", password_hash=pw
    )
    plan = Plan(
        org_id=org_a.id, name=f"Prépayé 5 Go {suffix}", plan_type=PlanType.PREPAID, price_minor=990, carrier="Orange"
    )
    session.add_all([user, plan])
    session.flush()

    prefix = "8933" + _digits(8)
    imsi_prefix = "20801" + _digits(4)

    def sim(key: str, n: int, org: Organisation, **values: object) -> SimCard:
        card = SimCard(
            org_id=org.id,
            iccid=iccid_with_check_digit(f"{prefix}{n:06d}"),
            imsi=f"{imsi_prefix}{n:06d}",
            **values,
        )
        session.add(card)
        session.flush()
        seed.iccids[key] = card.iccid
        seed.imsis[key] = card.imsi
        return card

    active = sim(
        "a_active",
        1,
        org_a,
        carrier="Orange",
        status=SimStatus.ACTIVE,
        sim_type=SimType.PREPAID,
        company_id=a1.id,
        end_user_id=user.id,
        plan_id=plan.id,
        in_session=True,
        remaining_bytes=1536 * 1024 * 1024,
        remaining_days=12,
        month_usage_bytes=300 * 1024 * 1024,
        tags=["flotte", "chauffeurs"],
        note="Camion 12",
        puk1="12345678",
    )
    sim(
        "a_esim",
        2,
        org_a,
        carrier="Orange",
        status=SimStatus.READY_FOR_ACTIVATION,
        sim_type=SimType.SUBSCRIPTION,
        company_id=a1.id,
        is_esim=True,
        activation_code=f"LPA:1$smdp.example.test${suffix.upper()}",
        in_session=False,
    )
    sim("a_suspended", 3, org_a, carrier="Bouygues", status=SimStatus.SUSPENDED, company_id=a2.id)
    sim("a_blank", 4, org_a, carrier="Orange", status=SimStatus.BLANK)
    sim("b_active", 5, org_b, carrier="SFR", status=SimStatus.ACTIVE, company_id=b1.id, note="Secret Bêta")

    session.add_all(
        [
            SimChange(
                sim_id=active.id,
                at=JOURNAL_AT,
                field="status",
                old_value="blank",
                new_value="ready_for_activation",
                actor="activation@simflow",
            ),
            SimChange(
                sim_id=active.id,
                at=JOURNAL_AT.replace(hour=15, minute=30),
                field="status",
                old_value="ready_for_activation",
                new_value="active",
                actor=seed.staff_a,
            ),
            SimChange(
                sim_id=active.id,
                at=JOURNAL_AT.replace(day=22),
                field="note",
                old_value=None,
                new_value="Camion 12",
                actor=seed.staff_a,
            ),
        ]
    )
    session.add(
        Line(
            org_id=org_a.id,
            company_id=a1.id,
            sim_id=active.id,
            msisdn="+33612345678",
            status=LineStatus.ACTIVE,
            cfast_service_id=f"SRV-{suffix}",
        )
    )
    session.add_all(
        [
            UpdateRecord(
                org_id=org_a.id,
                company_id=a1.id,
                workflow_id=seed.company_a1_workflow,
                reference=f"{seed.company_a1_workflow}:create-customer",
                system=ExternalSystem.CFAST,
                operation="create_customer",
                status=MajStatus.OK,
                sent={"customer_name": a1.name, "customerReference": a1.customer_reference},
                answer={"id": f"CUST-{suffix}"},
                ids_obtained={"customerId": f"CUST-{suffix}"},
                at=JOURNAL_AT,
            ),
            UpdateRecord(
                org_id=org_a.id,
                company_id=a1.id,
                workflow_id=seed.company_a1_workflow,
                reference=f"{seed.company_a1_workflow}:create-site",
                system=ExternalSystem.CFAST,
                operation="create_site",
                status=MajStatus.ERROR,
                sent={"siteLabel": "mobile"},
                answer={"status": 503},
                error="CFAST indisponible (503)",
                at=JOURNAL_AT.replace(minute=6),
            ),
        ]
    )
    session.flush()
    return seed
