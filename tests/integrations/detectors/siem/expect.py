"""Helpers for the SIEM, identity and Mac detector tests: read a payload file, and sum an
event up as a plain dict (the vendor tests' own ``summary``)."""

from __future__ import annotations

from pathlib import Path

from tests.integrations.detectors.edr.expect import summary

PAYLOADS = Path(__file__).parent / "payloads"

__all__ = ["PAYLOADS", "payload", "summary"]


def payload(vendor: str, name: str) -> bytes:
    return (PAYLOADS / vendor / name).read_bytes()
