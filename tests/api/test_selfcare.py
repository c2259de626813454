"""Self-care space over HTTP (ASGI, no browser): an end user sees their own line, its recharges and receipt, and
nothing of a sibling's (same company, another end user): every page, action and download answers 404 and
changes nothing. Sessions do not cross spaces: a staff session opens no self-care page, an end-user session
no portal page. Runs on SQLite and, in CI, PostgreSQL."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pyotp
import pytest_asyncio
from pypdf import PdfReader
from sqlalchemy import func, select

from activities.topups import ensure_topup_charge
from domain.enums import ArticleKind, InvoiceStatus, LineStatus, PaymentMethod, WalletOwnerType
from domain.models import (
    CatalogueArticle,
    EndUser,
    Line,
    Payment,
    SavedPaymentMethod,
    SecurityMessage,
    TopUp,
    Wallet,
    WalletEntry,
)
from domain.security import SecretBox, hash_password
from domain.services.billing import issue_invoice
from tests.api._security_support import steady_totp_moment
from tests.api.test_portal import Portal, browser, csrf_from, logged_in, portal  # noqa: F401 - `portal` is a fixture
from tests.browser.portal_seed import PASSWORD


@dataclass(frozen=True)
class Pair:
    alice: str  # e-mail
    bob: str
    bob_id: str
    alice_line: str
    bob_line: str
    alice_topup: str
    bob_topup: str
    bob_card: str


# This module's own client address: the per-address login-failure budget is shared by every module of the session,
# and the security tests spend the default address's on purpose.
OWN_ADDRESS = ("198.51.100.30", 4321)


@pytest_asyncio.fixture(scope="module")
async def pair(portal: Portal) -> Pair:  # noqa: F811
    """Two end users of the same company, each with an active line and a completed card recharge (receipt)."""
    seed = portal.seed
    tag = uuid.uuid4().hex[:8]
    ids: dict[str, str] = {}
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        article = CatalogueArticle(
            org_id=seed.org_a,
            code=f"DATA-{tag}",
            label="Recharge DATA 1 Go",
            kind=ArticleKind.ONE_OFF_OPTION,
            sale_price_minor=500,
            data_bytes=1024**3,
        )
        session.add(article)
        await session.flush()
        for who, msisdn in (("alice", "+33640000001"), ("bob", "+33640000002")):
            user = EndUser(
                org_id=seed.org_a,
                company_id=seed.company_a1,
                email=f"{who}-{tag}@dupont.test",
                full_name=who.title(),
                password_hash=hash_password(PASSWORD),
            )
            session.add(user)
            await session.flush()
            line = Line(
                org_id=seed.org_a,
                company_id=seed.company_a1,
                end_user_id=user.id,
                msisdn=msisdn,
                status=LineStatus.ACTIVE,
            )
            session.add(line)
            await session.flush()
            topup = TopUp(
                org_id=seed.org_a,
                company_id=seed.company_a1,
                line_id=line.id,
                end_user_id=user.id,
                idempotency_key=f"selfcare-test-{who}-{tag}",
                request_fingerprint="0" * 64,
                source="selfcare",
                requested_by=user.email,
                article_id=article.id,
                quantity=1,
                unit_price_minor=500,
                amount_minor=500,
                data_bytes=1024**3,
                payment_method=PaymentMethod.CARD,
                status="completed",
                payment_status="succeeded",
                payment_reference=f"pi_{who}{tag}",
                workflow_id=f"topup/{seed.org_a}/{who}-{tag}",
            )
            session.add(topup)
            await session.flush()
            payment, transaction = await ensure_topup_charge(session, topup)
            invoice = await issue_invoice(
                session,
                org_id=seed.org_a,
                company_id=seed.company_a1,
                reference=f"{topup.workflow_id}:invoice",
                transactions=[transaction],
                status=InvoiceStatus.PAID,
                payment_reference=topup.payment_reference,
                title=f"Recharge DATA 1 Go — {line.msisdn} {who}",
            )
            payment.invoice_id = invoice.id
            ids.update({f"{who}": user.email, f"{who}_id": user.id, f"{who}_line": line.id, f"{who}_topup": topup.id})
        card = SavedPaymentMethod(
            org_id=seed.org_a,
            company_id=seed.company_a1,
            end_user_id=ids["bob_id"],
            stripe_customer_id=f"cus_bob{tag}",
            stripe_payment_method_id=f"pm_bob{tag}",
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=2030,
        )
        session.add(card)
        await session.flush()
        ids["bob_card"] = card.id
    return Pair(
        alice=ids["alice"],
        bob=ids["bob"],
        bob_id=ids["bob_id"],
        alice_line=ids["alice_line"],
        bob_line=ids["bob_line"],
        alice_topup=ids["alice_topup"],
        bob_topup=ids["bob_topup"],
        bob_card=ids["bob_card"],
    )


@asynccontextmanager
async def _self_care(portal: Portal, email: str) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with browser(portal, OWN_ADDRESS) as client:
        yield await _login(client, email)


async def _login(client: httpx.AsyncClient, email: str) -> httpx.AsyncClient:
    form = await client.get("/self-care/login")
    assert form.status_code == 200 and "Connexion à votre espace client" in form.text
    response = await client.post(
        "/self-care/login",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf_from(form.text), "next": "/self-care/home"},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/self-care/home"
    return client


async def _counts(portal: Portal) -> tuple[int, int]:  # noqa: F811
    async with portal.app.state.simflow.sessionmaker() as session:
        topups = (await session.execute(select(func.count()).select_from(TopUp))).scalar_one()
        cards = (await session.execute(select(func.count()).select_from(SavedPaymentMethod))).scalar_one()
    return topups, cards


async def test_end_user_sees_own_line_history_and_receipt(portal: Portal, pair: Pair) -> None:  # noqa: F811
    async with _self_care(portal, pair.alice) as client:
        home = await client.get("/self-care/home")
        assert home.status_code == 200
        assert f'data-line-id="{pair.alice_line}"' in home.text and pair.bob_line not in home.text
        assert "Alpha Télécom" in home.text  # the organisation's brand
        line = await client.get(f"/self-care/lines/{pair.alice_line}")
        assert line.status_code == 200 and f'data-recharge-id="{pair.alice_topup}"' in line.text
        assert "Recharger" in line.text and "Consommation" in line.text
        progress = await client.get(f"/self-care/recharges/{pair.alice_topup}")
        assert progress.status_code == 200 and 'data-status="completed"' in progress.text
        assert "hx-get" not in progress.text  # settled: no more polling
        pdf = await client.get(f"/self-care/recharges/{pair.alice_topup}/receipt.pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
        assert "alice" in text and "bob" not in text
        again = await client.get("/self-care/login", params={"next": f"/self-care/lines/{pair.alice_line}"})
        assert again.status_code == 303 and again.headers["location"] == f"/self-care/lines/{pair.alice_line}"
        assert (await client.get("/self-care/login", params={"next": "//evil.test/"})).headers["location"] == (
            "/self-care/home"
        )
        invoices = await client.get("/self-care/invoices")
        assert invoices.status_code == 200
        assert f"/self-care/recharges/{pair.alice_topup}/receipt.pdf" in invoices.text
        assert pair.bob_topup not in invoices.text
        cards = await client.get("/self-care/cards")
        assert cards.status_code == 200 and "Aucune carte enregistrée" in cards.text and pair.bob_card not in cards.text


async def test_end_user_never_reaches_a_siblings_line(portal: Portal, pair: Pair) -> None:  # noqa: F811
    before = await _counts(portal)
    async with _self_care(portal, pair.alice) as client:
        token = csrf_from((await client.get("/self-care/home")).text)
        for path in (
            f"/self-care/lines/{pair.bob_line}",
            f"/self-care/recharges/{pair.bob_topup}",
            f"/self-care/recharges/{pair.bob_topup}/receipt.pdf",
        ):
            response = await client.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert "+33640000002" not in response.text and "Page introuvable" in response.text
        recharge = await client.post(
            f"/self-care/lines/{pair.bob_line}/recharges",
            data={"csrf_token": token, "data_gb": "1", "payment_method": "card", "batch": uuid.uuid4().hex},
        )
        assert recharge.status_code == 404
        # The card API of the space: Bob's cards, by his path or by Alice's, do not exist for Alice.
        headers = {"X-CSRF-Token": token}
        base = "/api/v1/end-users"
        assert (await client.get(f"{base}/{pair.bob_id}/payment-methods")).status_code == 404
        for path in (
            f"{base}/{pair.bob_id}/payment-methods/{pair.bob_card}",
            f"/api/v1/payment-methods/{pair.bob_card}",
        ):
            response = await client.delete(path, headers=headers)
            assert response.status_code in (404, 405), (path, response.status_code)
        alice_id = (await client.get("/api/v1/auth/me")).json()["id"]
        response = await client.delete(f"{base}/{alice_id}/payment-methods/{pair.bob_card}", headers=headers)
        assert response.status_code == 404
        response = await client.post(f"{base}/{alice_id}/payment-methods/{pair.bob_card}/default", headers=headers)
        assert response.status_code == 404
    assert await _counts(portal) == before
    async with portal.app.state.simflow.sessionmaker() as session:
        card = await session.get(SavedPaymentMethod, pair.bob_card)
        bob = await session.get(EndUser, pair.bob_id)
        payments = (await session.execute(select(func.count()).select_from(Payment))).scalar_one()
    assert card is not None and bob is not None and bob.stripe_payment_method_id is None
    assert payments >= 2


async def test_sessions_do_not_cross_spaces(portal: Portal, pair: Pair) -> None:  # noqa: F811
    async with logged_in(portal, portal.seed.staff_a, address=OWN_ADDRESS) as staff:
        for path in ("/self-care/home", f"/self-care/lines/{pair.alice_line}", "/self-care/cards"):
            response = await staff.get(path)
            assert response.status_code == 403, (path, response.status_code)
            assert "réservé aux utilisateurs finaux" in response.text
    async with _self_care(portal, pair.alice) as client:
        for path in ("/portal/home", "/portal/sims", f"/portal/lines/{pair.alice_line}"):
            response = await client.get(path)
            assert response.status_code in (403, 404), (path, response.status_code)
    # The staff login refuses end users, and the self-care login refuses staff.
    async with browser(portal, OWN_ADDRESS) as client:
        form = await client.get("/self-care/login")
        response = await client.post(
            "/self-care/login",
            data={"email": portal.seed.staff_a, "password": PASSWORD, "csrf_token": csrf_from(form.text)},
        )
        assert response.status_code == 403 and "simflow_session" not in response.headers.get("set-cookie", "")
        wrong = await client.post(
            "/self-care/login", data={"email": pair.alice, "password": "faux", "csrf_token": csrf_from(form.text)}
        )
        assert wrong.status_code == 401 and 'id="login-error"' in wrong.text


async def test_pages_without_a_session_redirect_to_the_self_care_login(portal: Portal, pair: Pair) -> None:  # noqa: F811
    dora = f"dora-{uuid.uuid4().hex[:8]}@dupont.test"  # her own account: the test changes its password
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        session.add(
            EndUser(
                org_id=portal.seed.org_a,
                company_id=portal.seed.company_a1,
                email=dora,
                full_name="Dora",
                password_hash=hash_password(PASSWORD),
            )
        )
    async with browser(portal, OWN_ADDRESS) as client:
        response = await client.get(f"/self-care/lines/{pair.alice_line}")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/self-care/login?next=")
        forgot = await client.get("/self-care/password/forgot")
        assert forgot.status_code == 200
        sent = await client.post(
            "/self-care/password/forgot", data={"email": dora, "csrf_token": csrf_from(forgot.text)}
        )
        assert sent.status_code == 200 and 'id="reset-sent"' in sent.text
    async with portal.app.state.simflow.sessionmaker() as session:
        mails = (await session.execute(select(SecurityMessage).where(SecurityMessage.recipient == dora))).scalars()
        mails = list(mails)
        assert [m.kind for m in mails] == ["password_reset"]
    # The mail's link opens the shared reset page; once done, an end user is sent to the self-care login.
    token = mails[0].body.split("#token=", 1)[1].split()[0]
    async with browser(portal, OWN_ADDRESS) as client:
        form = await client.get("/portal/password/reset")
        new_password = "Nouveau-mot-de-passe-2026!"
        done = await client.post(
            "/portal/password/reset",
            data={
                "token": token,
                "new_password": new_password,
                "confirmation": new_password,
                "csrf_token": csrf_from(form.text),
            },
        )
        assert done.status_code == 303 and done.headers["location"] == "/self-care/login?password_reset=1"
        login = await client.get(done.headers["location"])
        assert 'id="password-reset-done"' in login.text
        token_answer = await client.post("/api/v1/auth/token", data={"username": dora, "password": new_password})
        assert token_answer.status_code == 200


async def test_an_end_user_with_2fa_logs_in_with_the_code(portal: Portal) -> None:  # noqa: F811
    """The portal's login machinery: the password alone asks for the code and opens nothing."""
    secret = pyotp.random_base32()
    email = f"carol-{uuid.uuid4().hex[:8]}@dupont.test"
    settings = portal.app.state.simflow.settings
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        session.add(
            EndUser(
                org_id=portal.seed.org_a,
                company_id=portal.seed.company_a1,
                email=email,
                full_name="Carol",
                password_hash=hash_password(PASSWORD),
                totp_enabled=True,
                totp_secret_encrypted=SecretBox(settings.secrets_key.get_secret_value()).seal(secret),
            )
        )
    async with browser(portal, OWN_ADDRESS) as client:
        form = await client.get("/self-care/login")
        token = csrf_from(form.text)
        first = await client.post("/self-care/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
        assert first.status_code == 401 and 'name="totp"' in first.text and "required" in first.text
        assert "simflow_session" not in first.headers.get("set-cookie", "")
        assert (await client.get("/self-care/home")).status_code == 303
        wrong = await client.post(
            "/self-care/login", data={"email": email, "password": PASSWORD, "totp": "000000", "csrf_token": token}
        )
        assert wrong.status_code == 401
        moment = await steady_totp_moment()
        code = pyotp.TOTP(secret).at(moment)
        done = await client.post(
            "/self-care/login", data={"email": email, "password": PASSWORD, "totp": code, "csrf_token": token}
        )
        assert done.status_code == 303 and done.headers["location"] == "/self-care/home"
        home = await client.get("/self-care/home")
        assert home.status_code == 200 and email in home.text


async def test_the_wallet_is_offered_once_the_end_user_has_one(portal: Portal, pair: Pair) -> None:  # noqa: F811
    async with _self_care(portal, pair.alice) as client:
        page = await client.get(f"/self-care/lines/{pair.alice_line}")
        assert 'value="card"' in page.text and 'value="wallet"' not in page.text
        async with portal.app.state.simflow.sessionmaker.begin() as session:
            alice = (await session.execute(select(EndUser).where(EndUser.email == pair.alice))).scalar_one()
            session.add(
                Wallet(
                    org_id=alice.org_id,
                    company_id=alice.company_id,
                    owner_type=WalletOwnerType.END_USER,
                    owner_id=alice.id,
                )
            )
        page = await client.get(f"/self-care/lines/{pair.alice_line}")
        assert 'value="card"' in page.text and 'value="wallet"' in page.text
        # Bob has no wallet: a wallet recharge on his line stays a 404 for Alice, whatever the method.
        token = csrf_from(page.text)
        refused = await client.post(
            f"/self-care/lines/{pair.bob_line}/recharges",
            data={"csrf_token": token, "data_gb": "1", "payment_method": "wallet", "batch": uuid.uuid4().hex},
        )
        assert refused.status_code == 404


async def test_my_wallet_shows_balance_overview_and_ledger_read_only(portal: Portal, pair: Pair) -> None:  # noqa: F811
    async with _self_care(portal, pair.bob) as client:
        page = await client.get("/self-care/wallet")
        assert page.status_code == 200 and "Vous n'avez pas de portefeuille" in page.text
    reference = f"depot-{uuid.uuid4().hex[:8]}"
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        alice = (await session.execute(select(EndUser).where(EndUser.email == pair.alice))).scalar_one()
        wallet = (
            await session.execute(
                select(Wallet).where(Wallet.owner_type == WalletOwnerType.END_USER, Wallet.owner_id == alice.id)
            )
        ).scalar_one_or_none()
        if wallet is None:
            wallet = Wallet(
                org_id=alice.org_id, company_id=alice.company_id, owner_type=WalletOwnerType.END_USER, owner_id=alice.id
            )
            session.add(wallet)
            await session.flush()
        session.add(WalletEntry(wallet_id=wallet.id, amount_minor=1_250, kind="top_up", reference=reference))
        wallet_id = wallet.id
    async with _self_care(portal, pair.alice) as client:
        page = await client.get("/self-care/wallet", params={"from": "2020-01-01"})
        assert page.status_code == 200, page.text
        assert 'href="/self-care/wallet"' in page.text and reference in page.text
        assert 'id="wallet-balance">12,50' in page.text.replace("\u202f", " ").replace("\xa0", " ")
        assert f"/api/v1/wallets/{wallet_id}/ledger.csv?from=2020-01-01" in page.text
        assert '<form method="post"' not in page.text.split('id="wallet-general"')[1]  # nothing to set up here
        csv = await client.get(f"/api/v1/wallets/{wallet_id}/ledger.csv", params={"from": "2020-01-01"})
        assert csv.status_code == 200 and reference in csv.text


async def test_an_end_user_changes_their_password_from_the_self_care_space(portal: Portal) -> None:  # noqa: F811
    email = f"eve-{uuid.uuid4().hex[:8]}@dupont.test"  # her own account: the test changes its password
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        session.add(
            EndUser(
                org_id=portal.seed.org_a,
                company_id=portal.seed.company_a1,
                email=email,
                full_name="Eve",
                password_hash=hash_password(PASSWORD),
            )
        )

    async def password_hash() -> str:
        async with portal.app.state.simflow.sessionmaker() as session:
            stored = await session.scalar(select(EndUser.password_hash).where(EndUser.email == email))
            assert stored is not None
            return stored

    before = await password_hash()
    new_password = "Autre-mot-de-passe-2026!"
    async with _self_care(portal, email) as client:
        home = await client.get("/self-care/home")
        assert 'href="/self-care/password"' in home.text
        form = await client.get("/self-care/password")
        token = csrf_from(form.text)
        for data, field in (
            (
                {"current_password": "faux", "new_password": new_password, "confirmation": new_password},
                "current_password",
            ),
            ({"current_password": PASSWORD, "new_password": "court", "confirmation": "court"}, "new_password"),
            ({"current_password": PASSWORD, "new_password": new_password, "confirmation": "autre"}, "confirmation"),
        ):
            refused = await client.post("/self-care/password", data={**data, "csrf_token": token})
            assert refused.status_code == 400 and f'data-error-for="{field}"' in refused.text, field
            assert await password_hash() == before
        data = {"current_password": PASSWORD, "new_password": new_password, "confirmation": new_password}
        changed = await client.post("/self-care/password", data={**data, "csrf_token": token})
        assert changed.status_code == 200 and 'id="password-changed"' in changed.text
        assert "simflow_session" in changed.headers.get("set-cookie", "")  # a fresh session: the old one is revoked
        assert (await client.get("/self-care/home")).status_code == 200
    assert await password_hash() != before
    async with browser(portal, OWN_ADDRESS) as client:
        login = await client.get("/self-care/login")
        done = await client.post(
            "/self-care/login",
            data={"email": email, "password": new_password, "csrf_token": csrf_from(login.text)},
        )
        assert done.status_code == 303


async def test_an_end_user_cannot_recharge_on_the_companys_account(portal: Portal, pair: Pair) -> None:  # noqa: F811
    async def alice_topups() -> int:
        async with portal.app.state.simflow.sessionmaker() as session:
            query = select(func.count()).select_from(TopUp).where(TopUp.line_id == pair.alice_line)
            return (await session.execute(query)).scalar_one()

    before = await alice_topups()
    async with _self_care(portal, pair.alice) as client:
        token = csrf_from((await client.get("/self-care/home")).text)
        refused = await client.post(
            f"/api/v1/lines/{pair.alice_line}/recharges",
            json={"data_gb": 1, "payment_method": "account"},
            headers={"X-CSRF-Token": token, "Idempotency-Key": uuid.uuid4().hex},
        )
    assert refused.status_code == 422, refused.text
    assert "payment_method" in refused.text and "portefeuille" in refused.text
    assert await alice_topups() == before
