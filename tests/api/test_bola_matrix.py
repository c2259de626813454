"""S1: the BOLA matrix — every principal × every route with an id × every verb, with ids of real objects
of every tenant position (other organisation, sibling company, sibling end user, own).

The routes are enumerated from the application at test time, so a route added later is in the matrix
without touching this file — unless its path carries an id this file cannot fill: then the test fails
and asks for a factory in `FACTORIES` (a real object per tenant slot).

Expected: an object outside the caller's subtree answers 404 with a bare problem body (nothing of the
object in it) and changes nothing; inside the subtree, reads are not refused for tenancy (writes are not
sent: they would change the objects; their denials are S2's). List endpoints return no foreign object.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import func, select

from api.guard import path_parameters, rule_for
from domain.enums import (
    ApiKeyScope,
    ArticleKind,
    AutoRenewMode,
    BulkOperationKind,
    LineStatus,
    PaymentMethod,
    PlanType,
    PoolKind,
    SimStatus,
    StaffRole,
    SubscriptionKind,
    WalletOwnerType,
)
from domain.models import (
    BulkOperation,
    CatalogueArticle,
    Company,
    EndUser,
    Invoice,
    InvoiceCounter,
    Line,
    NumberRange,
    Onboarding,
    Organisation,
    Plan,
    Pool,
    SavedPaymentMethod,
    SimCard,
    SimImport,
    StaffUser,
    Subscription,
    TopUp,
    Wallet,
    WalletFunding,
    WebhookDelivery,
    WebhookEndpoint,
)
from domain.money import Money
from domain.services import billing
from tests.api._security_support import Db, add_api_key, add_end_user, add_staff_member, bearer
from tests.api._support import STRONG_PASSWORD, random_iccid, random_imsi, row_counts
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, LOG_DIR

SLOTS = ("o1c1u1", "o1c1u1b", "o1c1", "o1c2", "o1", "o2c3", "o2")
O1 = {s for s in SLOTS if s.startswith("o1")}
C1 = {"o1c1u1", "o1c1u1b", "o1c1"}

# principal → the slots inside its subtree
VISIBLE: dict[str, set[str]] = {
    "platform_admin": set(SLOTS),
    "org1_staff": O1,
    "org1_key_rw": O1,
    "org2_staff": {"o2c3", "o2"},
    "company1_staff": C1,
    "company1_key_rw": C1,
    "company1_key_ro": C1,
    "company2_staff": {"o1c2"},
    "end_user1": {"o1c1u1"},
}
COOKIE_PRINCIPALS = {"platform_admin", "org1_staff", "org2_staff", "company1_staff", "company2_staff", "end_user1"}
SAFE = {"GET"}


@dataclass
class Tenant:
    org_id: str
    company_id: str | None = None
    end_user_id: str | None = None


@dataclass
class World:
    db: Db
    tenants: dict[str, Tenant]
    principals: dict[str, dict[str, str]] = field(default_factory=dict)  # API headers
    cookies: dict[str, dict[str, str]] = field(default_factory=dict)  # portal headers
    objects: dict[tuple[str, str], str] = field(default_factory=dict)  # (param, slot) → value
    markers: dict[tuple[str, str], str] = field(default_factory=dict)  # text only that object would show

    async def get(self, param: str, slot: str) -> str | None:
        key = (param, slot)
        if key not in self.objects:
            factory = FACTORIES[param]
            value = await factory(self, slot)
            if value is None:
                return None
            self.objects[key] = value
        return self.objects[key]

    def all_values(self) -> set[str]:
        return set(self.objects.values())


Factory = Callable[[World, str], Awaitable[str | None]]


def _marker(world: World, param: str, slot: str) -> str:
    marker = f"BOLA-{slot}-{param}-{uuid.uuid4().hex[:6]}"
    world.markers[(param, slot)] = marker
    return marker


# --- factories: one real object per tenant slot ----------------------------------------------------------


async def _company(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    return t.company_id if t.end_user_id is None and t.company_id else None


async def _end_user(world: World, slot: str) -> str | None:
    return world.tenants[slot].end_user_id


async def _sim(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is None:
        return None
    iccid = random_iccid()
    async with world.db.begin() as session:
        session.add(
            SimCard(
                org_id=t.org_id,
                iccid=iccid,
                imsi=random_imsi(),
                carrier="Orange",
                status=SimStatus.ACTIVE,
                is_esim=True,
                activation_code=f"LPA:1$smdp.example.com${uuid.uuid4().hex}",
                company_id=t.company_id,
                end_user_id=t.end_user_id,
                note=_marker(world, "iccid", slot),
            )
        )
    return iccid


async def _line(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is None:
        return None
    line = Line(
        org_id=t.org_id,
        company_id=t.company_id,
        end_user_id=t.end_user_id,
        msisdn="+3367" + str(uuid.uuid4().int)[:7],
        status=LineStatus.ACTIVE,
        cfast_service_label=_marker(world, "line_id", slot),
    )
    async with world.db.begin() as session:
        session.add(line)
        # The line renews on its plan: its subscription is read through the line's routes.
        plan = Plan(
            org_id=t.org_id,
            company_id=t.company_id,
            name=f"BOLA {uuid.uuid4().hex[:8]}",
            plan_type=PlanType.PREPAID,
            price_minor=1000,
            carrier="Orange",
        )
        session.add(plan)
        await session.flush()
        today = datetime.now(UTC).date()
        session.add(
            Subscription(
                org_id=t.org_id,
                company_id=t.company_id,
                line_id=line.id,
                end_user_id=t.end_user_id,
                plan_id=plan.id,
                anchor_on=today,
                validity_days=30,
                next_renewal_on=today + timedelta(days=30),
                auto_renew_mode=AutoRenewMode.ON,
                payment_method=PaymentMethod.CARD,
                workflow_id=f"subscription/{t.org_id}/{line.id}",
            )
        )
    return line.id


async def _topup(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    line_id = await world.get("line_id", slot)
    if line_id is None:
        return None
    async with world.db.begin() as session:
        article = CatalogueArticle(
            org_id=t.org_id,
            code=f"bola-{uuid.uuid4().hex[:8]}",
            label="Recharge DATA 1Go",
            kind=ArticleKind.ONE_OFF_OPTION,
            sale_price_minor=50,
        )
        session.add(article)
        await session.flush()
        topup = TopUp(
            org_id=t.org_id,
            company_id=t.company_id,
            line_id=line_id,
            end_user_id=t.end_user_id,
            idempotency_key=uuid.uuid4().hex,
            request_fingerprint=uuid.uuid4().hex,
            source="api",
            requested_by="bola",
            article_id=article.id,
            quantity=1,
            unit_price_minor=50,
            amount_minor=50,
            data_bytes=1 << 30,
            payment_method=PaymentMethod.WALLET,
            workflow_id=f"topup/{t.org_id}/{uuid.uuid4().hex}",
            failure_reason=_marker(world, "recharge_id", slot),
        )
        session.add(topup)
    return topup.id


async def _bulk(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is None or t.end_user_id is not None:
        return None
    bulk = BulkOperation(
        org_id=t.org_id,
        company_id=t.company_id,
        kind=BulkOperationKind.EDIT_NOTE,
        params={"note": _marker(world, "bulk_id", slot)},
        workflow_id=f"bulk/{t.org_id}/{uuid.uuid4().hex}",
        created_by="bola",
    )
    async with world.db.begin() as session:
        session.add(bulk)
    return bulk.id


async def _import_batch(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is not None:
        return None
    batch = f"import-{uuid.uuid4().hex[:12]}"
    async with world.db.begin() as session:
        session.add(SimImport(org_id=t.org_id, batch=batch, filename=_marker(world, "batch", slot), created_by="bola"))
    return batch


async def _api_key(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.end_user_id is not None:
        return None
    _, key_id = await add_api_key(world.db, t.org_id, t.company_id)
    return key_id


async def _staff(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.end_user_id is not None:
        return None
    role = StaffRole.COMPANY_STAFF if t.company_id else StaffRole.ORG_STAFF
    _, staff_id = await add_staff_member(
        world.db, role=role, org_id=t.org_id, company_id=t.company_id, email=f"{_marker(world, 'staff_id', slot)}@x.fr"
    )
    return staff_id


async def _endpoint(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is not None:
        return None
    endpoint = WebhookEndpoint(
        org_id=t.org_id,
        url=f"https://hooks.example.com/{_marker(world, 'webhook_endpoint_id', slot)}",
        secret_encrypted="sealed",
        events=["*"],
        validated_at=datetime.now(UTC),
    )
    async with world.db.begin() as session:
        session.add(endpoint)
    return endpoint.id


async def _delivery(world: World, slot: str) -> str | None:
    endpoint_id = await world.get("webhook_endpoint_id", slot)
    if endpoint_id is None:
        return None
    delivery = WebhookDelivery(
        org_id=world.tenants[slot].org_id,
        endpoint_id=endpoint_id,
        event_id=f"evt_{uuid.uuid4().hex}",
        event_type="payment.created",
        payload={"note": _marker(world, "delivery_id", slot)},
    )
    async with world.db.begin() as session:
        session.add(delivery)
    return delivery.id


async def _number_range(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is not None:
        return None  # an organisation's object
    first = 33_612_000_000 + secrets.randbelow(900_000) * 100
    number_range = NumberRange(
        org_id=t.org_id,
        label=_marker(world, "number_range_id", slot),
        first_msisdn=f"+{first}",
        last_msisdn=f"+{first + 99}",
    )
    async with world.db.begin() as session:
        session.add(number_range)
    return number_range.id


async def _plan(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is None or t.end_user_id is not None:
        # A general plan is readable by the whole organisation (its company staff included), not a
        # subtree object; no plan belongs to an end user.
        return None
    plan = Plan(
        org_id=t.org_id,
        company_id=t.company_id,
        name=_marker(world, "plan_id", slot),
        plan_type=PlanType.PREPAID,
        price_minor=1000,
        carrier="Orange",
    )
    async with world.db.begin() as session:
        session.add(plan)
    return plan.id


async def _pool(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is None or t.end_user_id is not None:
        return None  # a pool belongs to a company, never to an end user
    async with world.db.begin() as session:
        plan = Plan(
            org_id=t.org_id,
            company_id=t.company_id,
            name=f"BOLA pool {uuid.uuid4().hex[:8]}",
            plan_type=PlanType.SUBSCRIPTION,
            subscription_kind=SubscriptionKind.STATIC_POOL,
            price_minor=5000,
            carrier="Orange",
        )
        session.add(plan)
        await session.flush()
        pool = Pool(
            org_id=t.org_id,
            company_id=t.company_id,
            name=_marker(world, "pool_id", slot),
            kind=PoolKind.STATIC,
            plan_id=plan.id,
        )
        session.add(pool)
    return pool.id


async def _transaction(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is None or t.end_user_id is not None:
        return None
    async with world.db.begin() as session:
        transaction = await billing.record_transaction(
            session,
            org_id=t.org_id,
            company_id=t.company_id,
            reference=f"bola:{uuid.uuid4().hex}",
            description=_marker(world, "transaction_id", slot),
            retail=Money(100),
        )
    return transaction.id


async def _invoice(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is None or t.end_user_id is not None:
        return None
    async with world.db.begin() as session:
        transaction = await billing.record_transaction(
            session,
            org_id=t.org_id,
            company_id=t.company_id,
            reference=f"bola:{uuid.uuid4().hex}",
            description="Frais",
            retail=Money(100),
        )
        invoice = await billing.issue_invoice(
            session,
            org_id=t.org_id,
            company_id=t.company_id,
            reference=f"bola:{uuid.uuid4().hex}",
            transactions=[transaction],
            title=_marker(world, "invoice_id", slot),
        )
    return invoice.id


async def _credit_note(world: World, slot: str) -> str | None:
    invoice_id = await world.get("invoice_id", slot)
    if invoice_id is None:
        return None
    async with world.db.begin() as session:
        invoice = await session.get(Invoice, invoice_id)
        assert invoice is not None
        note = await billing.issue_credit_note(session, invoice, [], reference=f"bola:{uuid.uuid4().hex}")
        note.title = _marker(world, "credit_note_id", slot)
    return note.id


async def _payment_method(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    if t.company_id is None:
        return None
    card = SavedPaymentMethod(
        org_id=t.org_id,
        company_id=t.company_id,
        end_user_id=t.end_user_id,
        stripe_customer_id=f"cus_bola{uuid.uuid4().hex[:12]}",
        stripe_payment_method_id=_marker(world, "payment_method_id", slot),
        brand="visa",
        last4="4242",
    )
    async with world.db.begin() as session:
        session.add(card)
    return card.id


async def _wallet(world: World, slot: str) -> str | None:
    """The slot's own wallet: its end user's, else its company's (what `/companies|end-users/{id}/wallet` read)."""
    t = world.tenants[slot]
    if t.company_id is None:
        return None
    owner_type = WalletOwnerType.END_USER if t.end_user_id else WalletOwnerType.COMPANY
    wallet = Wallet(
        org_id=t.org_id,
        company_id=t.company_id,
        owner_type=owner_type,
        owner_id=t.end_user_id or t.company_id,
    )
    async with world.db.begin() as session:
        session.add(wallet)
    return wallet.id


async def _funding(world: World, slot: str) -> str | None:
    wallet_id = await world.get("wallet_id", slot)
    if wallet_id is None:
        return None
    t = world.tenants[slot]
    funding = WalletFunding(
        org_id=t.org_id,
        company_id=t.company_id,
        end_user_id=t.end_user_id,
        wallet_id=wallet_id,
        idempotency_key=uuid.uuid4().hex,
        request_fingerprint=uuid.uuid4().hex,
        requested_by="bola",
        amount_minor=1000,
        status="failed",
        workflow_id=f"wallet-funding/{t.org_id}/{uuid.uuid4().hex}",
        failure_reason=_marker(world, "funding_id", slot),
    )
    async with world.db.begin() as session:
        session.add(funding)
    return funding.id


async def _onboarding(world: World, slot: str) -> str | None:
    """An organisation's onboarding (one per organisation): only the organisation-level slots have one."""
    t = world.tenants[slot]
    if t.company_id is not None:
        return None
    onboarding = Onboarding(
        org_id=t.org_id,
        workflow_id=f"onboarding/{t.org_id}",
        contact_email=f"bola-{uuid.uuid4().hex[:8]}@x.fr",
        contact_name=_marker(world, "onboarding_id", slot),
        stage="contracts_sent",
        deposit_minor=50_000,
        balance_minor=50_000,
        reminder_after_s=86_400,
        platform_sla_s=14 * 86_400,
        created_by="bola",
    )
    async with world.db.begin() as session:
        session.add(onboarding)
    return onboarding.id


async def _org(world: World, slot: str) -> str | None:
    t = world.tenants[slot]
    return t.org_id if t.company_id is None else None


FACTORIES: dict[str, Factory] = {
    "company_id": _company,
    "end_user_id": _end_user,
    "iccid": _sim,
    "line_id": _line,
    "recharge_id": _topup,
    "topup_id": _topup,
    "bulk_id": _bulk,
    "batch": _import_batch,
    "api_key_id": _api_key,
    "staff_id": _staff,
    "webhook_endpoint_id": _endpoint,
    "delivery_id": _delivery,
    "number_range_id": _number_range,
    "plan_id": _plan,
    "pool_id": _pool,
    "org_id": _org,
    "transaction_id": _transaction,
    "invoice_id": _invoice,
    "credit_note_id": _credit_note,
    "payment_method_id": _payment_method,
    "wallet_id": _wallet,
    "funding_id": _funding,
    "onboarding_id": _onboarding,
}


# --- the world --------------------------------------------------------------------------------------------


async def _tenancy(db: Db) -> dict[str, Tenant]:
    ids: dict[str, str] = {}
    async with db.begin() as session:
        for name in ("o1", "o2"):
            org = Organisation(name=f"BOLA {name}", slug=f"bola-{name}-{uuid.uuid4().hex[:8]}")
            session.add(org)
            await session.flush()
            session.add(InvoiceCounter(org_id=org.id, last_number=0))
            ids[name] = org.id
        for name, org in (("c1", "o1"), ("c2", "o1"), ("c3", "o2")):
            company = Company(org_id=ids[org], name=f"BOLA {name}", customer_reference=f"BOLA-{uuid.uuid4().hex[:12]}")
            session.add(company)
            await session.flush()
            ids[name] = company.id
    users = {}
    for name, org, company in (("u1", "o1", "c1"), ("u1b", "o1", "c1"), ("u2", "o1", "c2"), ("u3", "o2", "c3")):
        users[name] = await add_end_user(db, ids[org], ids[company], email=f"bola-{name}-{uuid.uuid4().hex[:8]}@x.fr")
    return {
        "o1c1u1": Tenant(ids["o1"], ids["c1"], users["u1"][1]),
        "o1c1u1b": Tenant(ids["o1"], ids["c1"], users["u1b"][1]),
        "o1c1": Tenant(ids["o1"], ids["c1"]),
        "o1c2": Tenant(ids["o1"], ids["c2"], None),
        "o1": Tenant(ids["o1"]),
        "o2c3": Tenant(ids["o2"], ids["c3"]),
        "o2": Tenant(ids["o2"]),
    }, users  # type: ignore[return-value]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(db: Db, app_client: httpx.AsyncClient) -> World:
    tenants, users = await _tenancy(db)  # type: ignore[misc]
    w = World(db=db, tenants=tenants)
    o1, o2 = tenants["o1"].org_id, tenants["o2"].org_id
    c1, c2 = tenants["o1c1"].company_id, tenants["o1c2"].company_id
    staff = {
        "org1_staff": await add_staff_member(db, org_id=o1),
        "org2_staff": await add_staff_member(db, org_id=o2),
        "company1_staff": await add_staff_member(db, role=StaffRole.COMPANY_STAFF, org_id=o1, company_id=c1),
        "company2_staff": await add_staff_member(db, role=StaffRole.COMPANY_STAFF, org_id=o1, company_id=c2),
    }
    tokens = {name: await bearer(app_client, email) for name, (email, _) in staff.items()}
    tokens["platform_admin"] = await bearer(app_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    tokens["end_user1"] = await bearer(app_client, users["u1"][0], STRONG_PASSWORD)
    w.principals.update(tokens)
    for name, headers in tokens.items():
        w.cookies[name] = {"Cookie": f"simflow_session={headers['Authorization'].removeprefix('Bearer ')}"}
    keys = {
        "org1_key_rw": await add_api_key(db, o1, None, ApiKeyScope.READ_WRITE),
        "company1_key_rw": await add_api_key(db, o1, c1, ApiKeyScope.READ_WRITE),
        "company1_key_ro": await add_api_key(db, o1, c1, ApiKeyScope.READ_ONLY),
    }
    w.principals.update({name: {"X-API-Key": key} for name, (key, _) in keys.items()})
    return w


# --- routes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    params: tuple[str, ...]

    @property
    def api(self) -> bool:
        return self.path.startswith("/api/")


def operations(app: Any) -> list[Operation]:
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not context.path:
            continue
        template = re.sub(r"{([^}:]+):[^}]*}", r"{\1}", context.path)  # `{iccid:iccid}`: a path convertor
        params = tuple(path_parameters(template))
        if rule_for(template).public:
            continue
        for method in sorted((context.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append(Operation(method, template, params))
    return found


def _app(client: httpx.AsyncClient) -> Any:
    transport = client._transport
    return transport.app  # type: ignore[attr-defined]


async def _snapshot(db: Db, world: World) -> dict[str, Any]:
    """Row counts of every table, and the rows of every object the matrix targets."""
    counts = await row_counts(db)
    rows: dict[str, Any] = {}
    async with db() as session:
        for model, column in (
            (Company, Company.id),
            (EndUser, EndUser.id),
            (SimCard, SimCard.iccid),
            (Line, Line.id),
            (TopUp, TopUp.id),
            (BulkOperation, BulkOperation.id),
            (StaffUser, StaffUser.id),
            (WebhookEndpoint, WebhookEndpoint.id),
            (WebhookDelivery, WebhookDelivery.id),
            (NumberRange, NumberRange.id),
            (SavedPaymentMethod, SavedPaymentMethod.id),
            (Wallet, Wallet.id),
            (WalletFunding, WalletFunding.id),
        ):
            table = model.__table__
            result = await session.execute(select(table).where(column.in_(world.all_values())))
            for row in result.mappings():
                data = {k: v for k, v in dict(row).items() if k not in ("last_login_at", "failed_logins")}
                rows[f"{model.__tablename__}:{row['id']}"] = json.dumps(data, default=str, sort_keys=True)
    return {"counts": counts, "rows": rows}


async def populate(world: World) -> None:
    """Every kind of object in every slot where it can exist, before anything is measured."""
    for param in FACTORIES:
        for slot in SLOTS:
            await world.get(param, slot)


def _path(op: Operation, values: dict[str, str]) -> str:
    path = op.path
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


async def test_bola_matrix(app_client: httpx.AsyncClient, world: World, db: Db) -> None:
    started = time.monotonic()
    ops = [op for op in operations(_app(app_client)) if op.params]
    missing = sorted({(p, f"{op.method} {op.path}") for op in ops for p in op.params if p not in FACTORIES})
    if missing:
        pytest.fail(
            "BOLA matrix: no factory for path parameter(s) "
            + ", ".join(f"{p!r} (in {where})" for p, where in missing)
            + ". Register in tests/api/test_bola_matrix.py FACTORIES an async factory building a real object "
            "for each tenant slot (return None for slots where such an object cannot exist), so the new route "
            "is tested against other tenants' ids."
        )

    await populate(world)
    before = await _snapshot(db, world)
    mismatches: list[str] = []
    cells = executed = denials = 0
    for op in ops:
        for slot in SLOTS:
            values = {p: await world.get(p, slot) for p in op.params}
            if any(v is None for v in values.values()):
                continue
            path = _path(op, values)  # type: ignore[arg-type]
            for principal, visible in VISIBLE.items():
                cells += 1
                if op.api:
                    headers = world.principals[principal]
                elif principal in COOKIE_PRINCIPALS:
                    headers = world.cookies[principal]
                else:
                    continue  # API keys do not open portal pages
                denied = slot not in visible
                if not denied and op.method not in SAFE:
                    continue  # allowed writes would change the world; their refusals are S2's
                executed += 1
                body = {"json": {}} if op.method in ("POST", "PUT", "PATCH") else {}
                response = await app_client.request(op.method, path, headers=headers, **body)
                where = f"{principal} {op.method} {op.path} [{slot}]"
                if denied:
                    denials += 1
                    if response.status_code != 404:
                        mismatches.append(f"{where}: expected 404, got {response.status_code} {response.text[:120]}")
                        continue
                    leaked = [m for (p, s), m in world.markers.items() if s == slot and m in response.text]
                    if leaked:
                        mismatches.append(f"{where}: 404 body shows {leaked}")
                    if op.api:
                        problem = response.json()
                        if set(problem) - {"type", "title", "status", "detail", "code", "errors"}:
                            mismatches.append(f"{where}: 404 body has extra fields {sorted(problem)}")
                elif response.status_code in (401, 404) or response.status_code >= 500:
                    mismatches.append(f"{where}: own object refused {response.status_code} {response.text[:120]}")
    after = await _snapshot(db, world)
    changed_counts = {
        name: (before["counts"].get(name), count)
        for name, count in after["counts"].items()
        if before["counts"].get(name) != count and name != "audit_log"
    }
    changed_rows = [k for k, v in after["rows"].items() if before["rows"].get(k) != v]
    elapsed = time.monotonic() - started
    summary = {
        "principals": len(VISIBLE),
        "routes_with_ids": len({op.path for op in ops}),
        "operations_with_ids": len(ops),
        "tenant_slots": len(SLOTS),
        "cells": cells,
        "requests": executed,
        "denials_checked": denials,
        "seconds": round(elapsed, 1),
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "bola-matrix.json").write_text(json.dumps(summary, indent=2))
    print(f"\nBOLA matrix: {summary}")
    assert not mismatches, f"{len(mismatches)} of {executed} cells differ:\n" + "\n".join(mismatches[:60])
    assert not changed_counts, f"rows written by refused requests: {changed_counts}"
    assert not changed_rows, f"objects changed by refused requests: {changed_rows[:20]}"
    assert denials > 0


async def test_list_endpoints_show_no_foreign_object(app_client: httpx.AsyncClient, world: World) -> None:
    """Every GET without an id (lists, exports), for every principal: no id or marker of an object outside
    the principal's subtree appears."""
    await populate(world)
    ops = [op for op in operations(_app(app_client)) if not op.params and op.method == "GET"]
    assert ops
    problems = []
    for op in ops:
        for principal, visible in VISIBLE.items():
            if op.api:
                headers = world.principals[principal]
            elif principal in COOKIE_PRINCIPALS:
                headers = world.cookies[principal]
            else:
                continue
            response = await app_client.get(op.path, headers=headers)
            # The health report answers 503 while another process is down (its contract): its body is read too.
            report = op.path == "/api/v1/health" and response.status_code == 503
            if response.status_code >= 500 and not report:
                problems.append(f"{principal} GET {op.path}: {response.status_code}")
                continue
            if response.status_code != 200 and not report:
                continue
            foreign = {
                value
                for (param, slot), value in world.objects.items()
                if slot not in visible and param not in ("org_id", "company_id", "end_user_id")
            } | {m for (_, slot), m in world.markers.items() if slot not in visible}
            shown = sorted(v for v in foreign if v in response.text)
            if shown:
                problems.append(f"{principal} GET {op.path} shows foreign objects {shown[:5]}")
    assert not problems, "\n".join(problems)


async def test_unknown_path_ids_fail_closed(app_client: httpx.AsyncClient, world: World) -> None:
    """A missing object and a foreign object are indistinguishable."""
    headers = world.principals["org1_staff"]
    foreign = await world.get("line_id", "o2c3")
    unknown = await app_client.get(f"/api/v1/lines/{uuid.uuid4().hex}", headers=headers)
    other = await app_client.get(f"/api/v1/lines/{foreign}", headers=headers)
    assert unknown.status_code == other.status_code == 404
    assert unknown.json() == other.json()
    async with world.db() as session:  # nothing was created by asking
        assert (await session.execute(select(func.count()).select_from(Line).where(Line.id == foreign))).scalar() == 1


def test_every_registered_factory_names_a_resolvable_id() -> None:
    from domain.services.tenancy import spec_for

    for param in FACTORIES:
        assert spec_for(param) is not None, param


# --- S2: function-level authorisation, generated from the routes too ---------------------------------------


def _own_values(op: Operation, world: World, slots: tuple[str, ...]) -> dict[str, str] | None:
    """Ids of objects inside the caller's subtree for every parameter of the route, or None."""
    for slot in slots:
        values = {p: world.objects.get((p, slot)) for p in op.params}
        if all(values.values()):
            return values  # type: ignore[return-value]
    return None


async def test_function_level_matrix(app_client: httpx.AsyncClient, world: World, db: Db) -> None:
    """On objects of their own subtree: a read-only key never writes, an end user writes only through
    self-service routes, an API key never uses account functions, a staff member without an area's
    permission is refused there, and only the platform uses platform functions. All 403, nothing written."""
    from api.guard import area_for

    await populate(world)
    o1 = world.tenants["o1"].org_id
    reader_email, _ = await add_staff_member(db, org_id=o1, permissions=["plan:read"])
    world.principals["org1_plan_reader"] = await bearer(app_client, reader_email)
    ops = [op for op in operations(_app(app_client)) if op.api]
    before = await row_counts(db)
    expectations: list[tuple[str, Operation, dict[str, str]]] = []
    for op in ops:
        rule = rule_for(op.path)
        writing = op.method not in SAFE
        candidates: list[tuple[str, tuple[str, ...], bool]] = [
            ("company1_key_ro", ("o1c1u1", "o1c1"), writing),
            ("end_user1", ("o1c1u1",), writing and not rule.end_user_write),
            ("org1_key_rw", ("o1c1u1", "o1c1", "o1c2", "o1"), rule.humans_only or rule.staff_only),
            ("org1_plan_reader", ("o1c1u1", "o1c1", "o1c2", "o1"), rule.check_area and area_for(op.path) != "plan"),
        ]
        for principal, slots, refused in candidates:
            if not refused:
                continue
            values = _own_values(op, world, slots) if op.params else {}
            if values is not None:
                expectations.append((principal, op, values))
    platform_only = [
        Operation("POST", "/api/v1/organisations", ()),
        Operation("GET", "/api/v1/audit-log/verification", ()),
        Operation("GET", "/api/v1/health", ()),
    ]
    for op in platform_only:
        for principal in ("org1_staff", "company1_staff", "end_user1", "org1_key_rw"):
            expectations.append((principal, op, {}))
    mismatches = []
    for principal, op, values in expectations:
        body = {"json": {}} if op.method in ("POST", "PUT", "PATCH") else {}
        response = await app_client.request(op.method, _path(op, values), headers=world.principals[principal], **body)
        if response.status_code != 403:
            mismatches.append(f"{principal} {op.method} {op.path}: {response.status_code} {response.text[:100]}")
    after = await row_counts(db)
    changed = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v and k != "audit_log"}
    print(f"\nfunction-level matrix: {len(expectations)} refusals checked")
    assert not mismatches, f"{len(mismatches)} of {len(expectations)}:\n" + "\n".join(mismatches[:60])
    assert not changed, changed
    assert len(expectations) > 50


# --- S3: mass assignment -------------------------------------------------------------------------------------

PRIVILEGED_FIELDS = {
    "tenant_id": "x",
    "org_id": "x",
    "company_id": "x",
    "end_user_id": "x",
    "role": "platform_admin",
    "permissions": ["*"],
    "status": "active",
    "price": 1,
    "price_minor": 1,
    "amount": 1,
    "amount_minor": 1,
    "balance": 10_000,
    "scope": "read_write",
    "is_admin": True,
}


def _json_bodies(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, resolved request schema) of every operation taking a JSON body."""
    components = schema.get("components", {}).get("schemas", {})
    found = []
    for path, operations_ in schema["paths"].items():
        for method, operation in operations_.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            if body is None:
                continue
            ref = body.get("$ref", "")
            found.append((method.upper(), path, components.get(ref.rsplit("/", 1)[-1], body)))
    return found


async def test_request_models_forbid_extra_fields(app_client: httpx.AsyncClient) -> None:
    schema = (await app_client.get("/openapi.json")).json()
    bodies = _json_bodies(schema)
    assert bodies
    lax = [f"{m} {p}" for m, p, s in bodies if s.get("additionalProperties") is not False]
    assert not lax, f"request bodies accepting unknown fields (use api.schemas.Request): {lax}"


async def test_privileged_fields_are_rejected_and_nothing_is_written(
    app_client: httpx.AsyncClient, world: World, db: Db
) -> None:
    await populate(world)
    schema = (await app_client.get("/openapi.json")).json()
    headers = world.principals["platform_admin"]
    before = await row_counts(db)
    problems = []
    checked = 0
    for method, path, body_schema in _json_bodies(schema):
        if rule_for(path).public:
            continue
        op = Operation(method, path, tuple(path_parameters(path)))
        values = _own_values(op, world, SLOTS) if op.params else {}
        if values is None:
            continue
        declared = set(body_schema.get("properties", {}))
        extra = {k: v for k, v in PRIVILEGED_FIELDS.items() if k not in declared}
        response = await app_client.request(method, _path(op, values), json=extra, headers=headers)
        checked += 1
        named = {e["field"] for e in response.json().get("errors", [])} if response.status_code == 422 else set()
        if response.status_code != 422 or not set(extra) <= named:
            problems.append(
                f"{method} {path}: {response.status_code}, extra fields named: {sorted(named & set(extra))}"
            )
    after = await row_counts(db)
    changed = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v and k != "audit_log"}
    assert checked > 10
    assert not problems, "\n".join(problems)
    assert not changed, changed


# --- by construction ---------------------------------------------------------------------------------------


async def test_a_route_added_later_inherits_the_guard(settings: Any, world: World) -> None:
    """A route written with no authorisation at all is still authenticated, tenant-checked and audited;
    an id the registry does not know stops the request instead of slipping through."""
    from fastapi import APIRouter

    from api.app import create_app
    from domain.services.tenancy import UnregisteredIdParameter

    app = create_app(settings)
    router = APIRouter(prefix="/api/v1/widgets")

    @router.get("/{line_id}")
    async def naive(line_id: str) -> dict[str, str]:
        return {"line_id": line_id}

    @router.get("/by-gizmo/{gizmo_ref}")
    async def unknown(gizmo_ref: str) -> dict[str, str]:
        return {"gizmo": gizmo_ref}

    app.include_router(router)
    own = await world.get("line_id", "o1c1")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simflow.test") as client:
            assert (await client.get(f"/api/v1/widgets/{own}")).status_code == 401
            assert (
                await client.get(f"/api/v1/widgets/{own}", headers=world.principals["org2_staff"])
            ).status_code == 404
            assert (
                await client.get(f"/api/v1/widgets/{own}", headers=world.principals["company2_staff"])
            ).status_code == 404
            allowed = await client.get(f"/api/v1/widgets/{own}", headers=world.principals["org1_staff"])
            assert allowed.status_code == 200 and allowed.json() == {"line_id": own}
            with pytest.raises(UnregisteredIdParameter, match="gizmo_ref"):
                await client.get("/api/v1/widgets/by-gizmo/x", headers=world.principals["platform_admin"])
