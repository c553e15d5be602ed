"""Privacy: one person's data exported and erased on request."""
