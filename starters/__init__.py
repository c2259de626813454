"""Workflow starters: the one place each workflow is started from (ids, search attributes, reuse policies,
summaries). The API and the worker call them; activities receive one as a callable when they must start a
workflow (`starters.webhooks.emit_event`), so that no activity imports this layer."""
