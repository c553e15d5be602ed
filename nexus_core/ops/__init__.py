"""Operating Nexus: the JSON-lines event log, the Prometheus exposition, the health checks and
incident reports (unexpected errors, withheld from users, kept for admins)."""
