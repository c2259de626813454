"""Portal wallet of an end user over HTTP (ASGI, session cookie, no browser, no Temporal): the company page
links each end user's wallet; organisation staff create it and set it; bad input is refused next to its
field and changes nothing; company staff may read it but not change its settings; another organisation's end
user is the 404 page. Funding runs its workflow: the company wallet's browser test drives it."""

from __future__ import annotations

from sqlalchemy import select

from domain.enums import WalletOwnerType
from domain.models import AuditLog, EndUser, Wallet
from tests.api.test_portal import Portal, csrf_from, logged_in, portal  # noqa: F401 - `portal` is a fixture


async def _end_user_id(portal: Portal) -> str:  # noqa: F811
    async with portal.app.state.simflow.sessionmaker() as session:
        user_id = await session.scalar(select(EndUser.id).where(EndUser.email == portal.seed.end_user_a1))
        assert user_id is not None
        return user_id


async def _wallet(portal: Portal, user_id: str) -> Wallet | None:  # noqa: F811
    async with portal.app.state.simflow.sessionmaker() as session:
        query = select(Wallet).where(Wallet.owner_type == WalletOwnerType.END_USER, Wallet.owner_id == user_id)
        return await session.scalar(query)


async def test_end_user_wallet_is_created_and_set_from_the_portal(portal: Portal) -> None:  # noqa: F811
    user_id = await _end_user_id(portal)
    url = f"/portal/end-users/{user_id}/wallet"
    async with logged_in(portal, portal.seed.staff_a1) as client:  # company staff: read only
        empty = await client.get(url)
        assert empty.status_code == 200 and "Cet utilisateur final n'a pas encore de portefeuille" in empty.text
        assert 'id="create-wallet"' not in empty.text
        refused = await client.post(url, data={"csrf_token": csrf_from(empty.text)})
        assert refused.status_code == 403 and await _wallet(portal, user_id) is None
    async with logged_in(portal, portal.seed.staff_b) as client:
        assert (await client.get(url)).status_code == 404
    async with logged_in(portal, portal.seed.staff_a) as client:
        company = await client.get(f"/portal/companies/{portal.seed.company_a1}")
        assert f'href="{url}"' in company.text
        page = await client.get(url)
        assert "Jeanne Dupont" in page.text and f'action="{url}"' in page.text
        token = csrf_from(page.text)
        created = await client.post(url, data={"csrf_token": token})
        assert created.status_code == 303 and created.headers["location"] == url
        wallet = await _wallet(portal, user_id)
        assert wallet is not None and wallet.enabled and wallet.min_balance_minor == 0
        twice = await client.post(url, data={"csrf_token": token})
        assert twice.status_code == 409 and 'id="wallet-error"' in twice.text and "Jeanne Dupont" in twice.text
        async with portal.app.state.simflow.sessionmaker() as session:
            audited = await session.scalar(select(AuditLog.action).where(AuditLog.target == f"wallet:{wallet.id}"))
        assert audited == "wallet.created"

        bad = await client.post(f"{url}/settings", data={"min_balance": "beaucoup", "csrf_token": token})
        assert bad.status_code == 422 and "Solde minimum : montant invalide" in bad.text
        unfunded = await client.post(f"{url}/fundings", data={"amount": "-3", "batch": "a" * 32, "csrf_token": token})
        assert unfunded.status_code == 422 and "Montant : montant invalide" in unfunded.text
        unchanged = await _wallet(portal, user_id)
        assert unchanged is not None and unchanged.enabled and unchanged.min_balance_minor == 0

        saved = await client.post(f"{url}/settings", data={"min_balance": "-12,50", "csrf_token": token})
        assert saved.status_code == 303
        updated = await _wallet(portal, user_id)
        assert updated is not None and not updated.enabled and updated.min_balance_minor == -1250
        again = await client.get(url)
        assert 'id="wallet-balance"' in again.text and f'hx-get="{url}/fundings"' not in again.text
        # The company's own wallet page still answers on its URLs.
        company_wallet = await client.get(f"/portal/companies/{portal.seed.company_a1}/wallet")
        assert company_wallet.status_code == 200
        assert f'action="/portal/companies/{portal.seed.company_a1}/wallet"' in company_wallet.text
