"""Money (`codex checkout`, `purchases`, `webhook`, `refund`, `reconcile`): Stripe Checkout, completion,
webhooks, refunds and reconciliation."""
