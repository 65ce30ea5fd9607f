"""Indicator lookups (VirusTotal, AbuseIPDB, …): the enricher that wraps each one
(``enricher``), its database cache (``store``), per-provider quotas (``quota``) and circuit
breakers (``breaker``), the privacy screen (``privacy``), and the scheduled job that answers
lookups deferred for quota (``deferred``)."""

from pipeline.lookups.enricher import LookupEnricher, Outcome

__all__ = ["LookupEnricher", "Outcome"]
