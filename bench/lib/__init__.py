"""bench/run's modules: util (processes, /proc), servers (the peers per path, nginx), pg
(PostgreSQL for the TechEmpower-style tests), load (wrk and the other clients), scenarios (what
is measured, on which path), report (medians, targets, the markdown, the chart)."""
