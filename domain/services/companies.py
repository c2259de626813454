"""Companies: creation with their default billing site (5000) and mobile parc (9000)."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.contracts import CfastCustomerInput
from domain.enums import ParcType
from domain.errors import AlreadyExists, NotFound
from domain.models import BillingSite, Company, Organisation, Parc


async def create_company(
    session: AsyncSession,
    *,
    org_id: str,
    name: str,
    siret: str | None,
    vat_number: str | None,
    is_virtual: bool,
    billing_email: str | None,
    address: str | None,
) -> tuple[Company, BillingSite, Parc]:
    org = await session.get(Organisation, org_id)
    if org is None:
        raise NotFound("org_id", "organisation introuvable")
    if siret is not None:
        duplicate = await session.execute(select(Company.id).where(Company.org_id == org_id, Company.siret == siret))
        if duplicate.first():
            raise AlreadyExists("siret", "une entreprise avec ce SIRET existe déjà dans l'organisation")
    company = Company(
        org_id=org_id,
        name=name,
        siret=siret,
        vat_number=vat_number,
        is_virtual=is_virtual,
        billing_email=billing_email,
        address=address,
        customer_reference=f"{org.slug.upper()[:12]}-{secrets.token_hex(4).upper()}",
    )
    session.add(company)
    await session.flush()
    site = BillingSite(org_id=org_id, company_id=company.id, label=f"{name} — facturation", address=address)
    session.add(site)
    await session.flush()
    parc = Parc(
        org_id=org_id,
        company_id=company.id,
        billing_site_id=site.id,
        label=f"{name} — mobile",
        parc_type=ParcType.MOBILE,
    )
    session.add(parc)
    await session.flush()
    return company, site, parc


def cfast_customer_input(company: Company, site: BillingSite, parc: Parc) -> CfastCustomerInput:
    return CfastCustomerInput(
        org_id=company.org_id,
        company_id=company.id,
        customer_name=company.name,
        customer_reference=company.customer_reference,
        siret=company.siret,
        vat_number=company.vat_number,
        billing_site_id=site.id,
        billing_site_label=site.label,
        billing_address=site.address,
        parc_id=parc.id,
        parc_label=parc.label,
        parc_type=parc.parc_type.value,
    )


COMPANY_EDITABLE = ("name", "siret", "vat_number", "billing_email", "address")


async def update_company(session: AsyncSession, company: Company, changes: dict[str, object]) -> list[str]:
    """Applies the given fields (already validated) and returns the names of those that changed. CFAST
    offers no update of a customer account: the change stays here (see docs/decisions.md)."""
    siret = changes.get("siret")
    if "siret" in changes and siret is not None and siret != company.siret:
        duplicate = await session.execute(
            select(Company.id).where(Company.org_id == company.org_id, Company.siret == siret, Company.id != company.id)
        )
        if duplicate.first():
            raise AlreadyExists("siret", "une entreprise avec ce SIRET existe déjà dans l'organisation")
    changed = []
    for name in COMPANY_EDITABLE:
        if name in changes and getattr(company, name) != changes[name]:
            setattr(company, name, changes[name])
            changed.append(name)
    await session.flush()
    return changed
