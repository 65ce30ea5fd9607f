"""Fido's domain: models, storage, policy and the ingest → enrich → correlate → score →
decide → act pipeline. Knows nothing of Slack: it reaches people through `Notifier`."""
