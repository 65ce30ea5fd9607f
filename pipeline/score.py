"""Score: 0–100, every point with its reason. The breakdown always sums to the score."""

from __future__ import annotations

from typing import Any

from pipeline.enrich import facts_for
from pipeline.models import Incident
from pipeline.observables import Observables, account_name
from pipeline.policy import Policy


def score(incident: Incident, policy: Policy) -> tuple[int, list[dict[str, Any]]]:
    weights = policy.scoring
    items: list[dict[str, Any]] = []

    def add(points: int, reason: str) -> None:
        if points:
            items.append({"points": points, "reason": reason})

    add(weights.severity.get(incident.severity, 0), f"severity {incident.severity}")
    observables = Observables.model_validate(incident.observables)
    seen: set[str] = set()
    for user in observables.users:
        facts = facts_for(incident.enrichment, Observables.key("user", user))
        account = str(facts.get("account") or account_name(user)).casefold()
        if account in seen:
            continue  # the same account named twice (alice, alice@corp, CORP\\alice)
        seen.add(account)
        if facts.get("found"):
            add(weights.user_in_directory, f"user {user} is a real directory account")
            if facts.get("privileged"):
                add(weights.privileged_user, f"user {user} is in a privileged group")
    extra = max(incident.event_count - 1, 0)
    add(
        min(extra * weights.per_extra_event, weights.max_extra_events),
        f"{extra} more related event{'s' if extra != 1 else ''}",
    )
    total = sum(i["points"] for i in items)
    if total > 100:
        add(100 - total, "capped at 100")
    elif total < 0:
        add(-total, "floored at 0")
    return sum(i["points"] for i in items), items
