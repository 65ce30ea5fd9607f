"""Slack-facing pieces: interaction ids, what buttons carry, and the block builders."""
