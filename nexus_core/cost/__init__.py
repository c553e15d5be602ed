"""What AI replies cost and who spends it: a versioned price table (``prices``), the cost of one
reply at the price in effect when it ran, monthly budgets per user and persona (``budgets``), and
usage reports over the event log (``usage``)."""
