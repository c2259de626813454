"""Automation rules: finds lines whose remaining data is under their auto top-up threshold (read from the
OCS) and writes their top-up intents, exactly as the API does for a manual recharge."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities._errors import translates_errors
from domain.contracts import AutoTopUpScan, AutoTopUpStarted
from domain.enums import TopUpSource
from domain.security import MsisdnIndex
from domain.services.auto_topup import lines_under_auto_topup, rule_topup_count
from domain.services.topups import TopUpRequest, submit_topup
from integrations.ocs import OcsClient
from workflows import activity_names as names


@translates_errors
class RuleActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        ocs: OcsClient,
        snaic_sla_s: int,
        msisdn_index: MsisdnIndex,
        charge_window_s: int = 600,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._ocs = ocs
        self._snaic_sla_s = snaic_sla_s
        self._charge_window_s = charge_window_s
        self._msisdn_index = msisdn_index

    @activity.defn(name=names.RULES_PREPARE_AUTO_TOPUPS)
    async def prepare_auto_topups(self, data: AutoTopUpScan) -> AutoTopUpStarted:
        async with self._sessionmaker() as session:
            candidates = (await lines_under_auto_topup(session))[: data.limit]
        started = AutoTopUpStarted(checked=len(candidates))
        for line, rule in candidates:
            assert line.ocs_account is not None
            account = await self._ocs.get_account(line.ocs_account)
            remaining = account.total("*data") if account is not None else 0
            if remaining >= rule.threshold_bytes:
                continue
            async with self._sessionmaker() as session:
                episode = await rule_topup_count(session, line.id)
                # One key per line and trigger episode: a retried activity finds the intent it already wrote.
                key = f"rule-{rule.rule_id[:12]}-{line.id[:12]}-{episode}"
                submitted = await submit_topup(
                    session,
                    TopUpRequest(
                        line_id=line.id,
                        data_gb=rule.data_gb,
                        payment_method=rule.payment_method,
                        idempotency_key=key,
                        source=TopUpSource.RULE,
                        requested_by=f"rule:{rule.rule_id}",
                    ),
                    principal=None,
                    sla_s=self._snaic_sla_s,
                    charge_window_s=self._charge_window_s,
                )
            if submitted.msisdn:
                started.msisdn_hashes[submitted.topup.id] = self._msisdn_index.of(submitted.msisdn)
            started.inputs.append(submitted.workflow_input)
        return started
