"""Analytics: metrics over the event log and the database, SLO maths, chart builders."""
