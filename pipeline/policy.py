"""The policy: what Fido listens to, how it scores, when it asks and when it acts.

Loaded from the YAML file named by ``FIDO_CONFIG``; every field has a safe built-in
default, so Fido runs without one. Auto-action is opt-in: ``thresholds.auto_act`` is unset
by default, and then Fido only ever asks.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from pipeline.observables import account_skeleton


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignatureRule(_Strict):
    """An HMAC the detector puts in a header of each delivery."""

    header: str  # e.g. X-Signature
    secret_env: str  # environment variable holding the shared secret
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""  # e.g. "sha256=" before the digest
    # when set, the signed message is "<timestamp><separator><body>" and the timestamp
    # (epoch seconds) must be within max_skew_seconds of now
    timestamp_header: str | None = None
    separator: str = ""
    max_skew_seconds: int = Field(default=300, gt=0)


class DetectorPolicy(_Strict):
    enabled: bool = True
    # generic fields (user, host, src_ip, ...) ← dotted paths in the detector's payload
    field_map: dict[str, str] = Field(default_factory=dict)
    # environment variable holding this detector's own bearer token (else FIDO_WEBHOOK_TOKEN)
    token_env: str | None = None
    # header carrying the token when the vendor cannot send "Authorization: Bearer"
    # (the header's whole value is compared with the token)
    token_header: str | None = None
    signature: SignatureRule | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # false: an incident this detector's alerts are part of asks instead of acting alone
    auto_act: bool = True


class SourcePolicy(_Strict):
    """A detector Fido fetches from: API poll, SQL table, log file or mailbox."""

    type: str  # a registered source: crowdstrike_api, sentinelone_api, defender_xdr_api, …
    detector: str  # the detector that parses what it fetches
    interval_seconds: float = Field(default=60, gt=0)
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


def _severities(critical: int, high: int, medium: int, low: int) -> dict[str, int]:
    return {"informational": 0, "low": low, "medium": medium, "high": high, "critical": critical}


class ThreatWeights(_Strict):
    """How bad the alert itself is: the detector's severity, what threat intelligence says
    about its indicators, and how often Fido has seen them before."""

    cap: int = Field(default=70, ge=0, le=100)
    severity: dict[str, int] = Field(default_factory=lambda: _severities(60, 40, 25, 10))
    # added to every alert of a detector, e.g. {suricata: -5, crowdstrike: 5}
    detector_base: dict[str, int] = Field(default_factory=dict)
    # per indicator and source; "benign" is a known-good service or a benign scanner
    verdicts: dict[str, int] = Field(
        default_factory=lambda: {"malicious": 25, "suspicious": 10, "benign": -10}
    )
    seen_before: int = 3  # per earlier incident carrying the same indicator
    max_seen_before: int = Field(default=9, ge=0)  # per indicator


class AssetWeights(_Strict):
    """How much the machine matters: criticality and zone from the asset inventory or
    Jamf (matched case-insensitively), and whether it is managed and encrypted."""

    cap: int = Field(default=25, ge=0, le=100)
    criticality: dict[str, int] = Field(
        default_factory=lambda: {"critical": 15, "crown-jewel": 15, "high": 10}
    )
    zones: dict[str, int] = Field(
        default_factory=lambda: {
            "pci": 10,
            "restricted": 10,
            "tier-0": 10,
            "production": 5,
            "dmz": 5,
        }
    )
    unmanaged: int = 5
    unencrypted: int = 5

    @field_validator("criticality", "zones")
    @classmethod
    def _folded(cls, values: dict[str, int]) -> dict[str, int]:
        return {k.strip().casefold(): v for k, v in values.items()}


class UserWeights(_Strict):
    """How much the person matters: a real account, privileged, a VIP, and how their
    earlier incidents ended."""

    cap: int = Field(default=30, ge=0, le=100)
    in_directory: int = 10
    privileged: int = 15
    vip: int = 10
    vip_accounts: list[str] = Field(default_factory=list)  # any form: CORP\\ceo, ceo@corp
    # a directory title or department containing one of these words makes a VIP
    vip_titles: list[str] = Field(
        default_factory=lambda: ["chief", "president", "director", "cfo", "ceo", "cto"]
    )
    vip_departments: list[str] = Field(default_factory=lambda: ["executive", "board"])
    earlier_true_positive: int = 10  # per earlier incident of this user closed as such
    earlier_false_positive: int = -5  # per earlier false positive or benign incident


class CorrelationWeights(_Strict):
    """How much the surrounding alerts say: other detectors agreeing, more events, and
    the same alert recurring over hours (FIDO's repeat windows)."""

    cap: int = Field(default=25, ge=0, le=100)
    per_other_detector: int = 10
    per_extra_event: int = 3
    max_extra_events: int = Field(default=9, ge=0)
    # a repeat seen within this many minutes updates the incident without paging again
    quiet_repeat_minutes: float = Field(default=30, ge=0)
    # hours the same alert has kept recurring → points (the largest window reached counts)
    repeat_after_hours: dict[float, int] = Field(default_factory=lambda: {4.0: 5, 12.0: 10})


class Scoring(_Strict):
    """Four components, each capped, summed and clamped to 0–100 (docs/scoring.md)."""

    threat: ThreatWeights = Field(default_factory=ThreatWeights)
    asset: AssetWeights = Field(default_factory=AssetWeights)
    user: UserWeights = Field(default_factory=UserWeights)
    correlation: CorrelationWeights = Field(default_factory=CorrelationWeights)


JoinKind = Literal["user", "host", "hash", "external_ip", "domain", "url"]
JOIN_KINDS: tuple[JoinKind, ...] = ("user", "host", "hash", "external_ip", "domain", "url")


class CorrelationPolicy(_Strict):
    """When a new alert joins an open incident: it shares one of ``join_on`` with it and
    the incident saw an alert within ``window_minutes``. Private and internal addresses
    (RFC 1918 and ``privacy.internal_networks``) never join on their own: alerts sharing
    one join only when they also share a user or host."""

    window_minutes: int = Field(default=60, ge=0)
    join_on: list[JoinKind] = Field(default_factory=lambda: list(JOIN_KINDS))
    history_days: int = Field(default=90, ge=1)  # how far back sightings are counted


class SuppressionMatch(_Strict):
    """Every field given must match the alert; users by account, hosts and hashes
    case-insensitively, ``ip`` an address or CIDR, ``domain`` itself or any subdomain,
    ``title`` a case-insensitive glob (``*`` and ``?``)."""

    user: str | None = None
    host: str | None = None
    ip: str | None = None
    hash: str | None = None
    domain: str | None = None
    detector: str | None = None
    title: str | None = None

    @model_validator(mode="after")
    def _something(self) -> SuppressionMatch:
        if not self.model_dump(exclude_none=True):
            raise ValueError("a suppression must match on at least one field")
        if self.ip is not None:
            ipaddress.ip_network(self.ip.strip(), strict=False)  # ValueError names it
        return self


class SuppressionRule(_Strict):
    """A known-noisy alert silenced on purpose: stored and attached, never posted or acted
    on, until ``expires``."""

    name: str | None = None  # how /fido suppressions and the metrics name it
    match: SuppressionMatch
    owner: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    expires: datetime

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class Thresholds(_Strict):
    notify: int = Field(default=0, ge=0, le=100)
    ask_approval: int = Field(default=70, ge=0, le=100)
    auto_act: int | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.auto_act is not None and self.auto_act < self.ask_approval:
            raise ValueError("thresholds.auto_act must be at least thresholds.ask_approval")
        return self


class ActionPolicy(_Strict):
    responder: str
    # the responder's own settings, checked against its Options model at start-up (secrets
    # as the names of environment variables); every rule naming a responder gives the same
    options: dict[str, Any] = Field(default_factory=dict)
    # which users are proposed: those the directory knows (default) or every user named
    require_directory_match: bool = True
    # who may approve it, besides FIDO_APPROVERS and the policy's approvers: Slack user ids
    # (U…) and a Slack user group (S…) whose members may approve
    approvers: list[str] = Field(default_factory=list)
    approver_group: str | None = Field(default=None, pattern=r"^S[A-Z0-9]+$")
    # high impact: two distinct approvers for every target, never automatic
    two_person: bool = False
    auto: bool = True  # may run automatically above thresholds.auto_act (else it asks)
    dry_run: bool = False  # this action only says what it would have done
    # past this many automatic runs in an hour the responder asks instead, until reset
    max_auto_per_hour: int | None = Field(default=None, ge=0)
    # a containment that is undone by itself after this many hours unless extended
    expire_after_hours: float | None = Field(default=None, gt=0)


def _networks(values: list[str]) -> list[str]:
    """Each entry an IP or CIDR (host bits allowed), in canonical form; bad ones stop start-up."""
    return [str(ipaddress.ip_network(v.strip(), strict=False)) for v in values]


def _domains(values: list[str]) -> list[str]:
    """Lower case, without a leading ``*.`` or dot and without the root dot."""
    cleaned = (v.strip().casefold().removeprefix("*.").strip(".") for v in values)
    return [v for v in cleaned if v]


class LookupCachePolicy(_Strict):
    """How long one enricher's answers are kept: found (positive) and not found (None)."""

    ttl_seconds: float = Field(default=86400, ge=0)
    negative_ttl_seconds: float = Field(default=3600, ge=0)


class ProviderPolicy(_Strict):
    """One provider's quota (None: unlimited) and circuit breaker."""

    per_minute: int | None = Field(default=None, ge=0)
    per_day: int | None = Field(default=None, ge=0)
    breaker_failures: int = Field(default=5, ge=1)  # consecutive failed calls that open it
    breaker_cooldown_seconds: float = Field(default=60, gt=0)  # open → half-open after this
    concurrency: int | None = Field(default=None, ge=1)  # calls in flight; None: lookups'


# Published free-tier limits, applied unless the policy says otherwise field by field.
# VirusTotal's public API: 4 requests/minute and 500/day.
BUILTIN_PROVIDERS: dict[str, dict[str, Any]] = {"virustotal": {"per_minute": 4, "per_day": 500}}


class LookupsPolicy(_Strict):
    """Cache, quota, retries and deferral for indicator lookups (``pipeline/lookups/``)."""

    enrichers: dict[str, LookupCachePolicy] = Field(default_factory=dict)  # by enricher name
    providers: dict[str, ProviderPolicy] = Field(default_factory=dict)  # by provider
    retries: int = Field(default=2, ge=0, le=5)  # after the first try, for errors other than 429
    retry_backoff_seconds: float = Field(default=0.5, ge=0)  # doubled on each retry
    # calls in flight per enricher (None: as many as the worker pool has events in flight,
    # so that no event waits for a slot behind others); the quota (per_minute/per_day) is
    # what keeps a rate-limited vendor within its limits
    concurrency: int | None = Field(default=None, ge=1)
    deferred_interval_seconds: float = Field(default=5, gt=0)  # how often run_deferred runs
    deferred_max_attempts: int = Field(default=5, ge=1)  # failed rounds before giving up

    def cache(self, enricher: str) -> LookupCachePolicy:
        return self.enrichers.get(enricher) or LookupCachePolicy()

    def provider(self, name: str) -> ProviderPolicy:
        """The provider's settings: the built-in limits overlaid with what the policy set."""
        base = ProviderPolicy.model_validate(BUILTIN_PROVIDERS.get(name, {}))
        configured = self.providers.get(name)
        if configured is None:
            return base
        return base.model_copy(
            update={f: getattr(configured, f) for f in configured.model_fields_set}
        )


class PrivacyPolicy(_Strict):
    """What never leaves the company: values under these domains or in these networks."""

    internal_domains: list[str] = Field(default_factory=list)  # suffix match: corp.example
    internal_networks: list[str] = Field(default_factory=list)  # CIDRs, beyond the private ones

    _nets = field_validator("internal_networks")(_networks)
    _doms = field_validator("internal_domains")(_domains)


class Allowlist(_Strict):
    """Known-good values Fido never looks up (CIDRs for ips, suffix match for domains)."""

    ips: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    hashes: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)  # exact, or a prefix when ending in "/"
    hosts: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)

    _nets = field_validator("ips")(_networks)
    _doms = field_validator("domains")(_domains)


class RouteRule(_Strict):
    """Where an incident's card goes: the first rule whose every given condition holds.
    ``severities``, ``detectors`` (any of the incident's) and ``teams`` (a user's or host's
    ``team`` or ``department`` fact, case-insensitive) are lists; the score band is
    ``min_score``..``max_score`` inclusive."""

    channel: str = Field(min_length=1)
    severities: list[str] = Field(default_factory=list)
    detectors: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    min_score: int = Field(default=0, ge=0, le=100)
    max_score: int = Field(default=100, ge=0, le=100)


class RoutingPolicy(_Strict):
    """Channels per severity, detector, score band or team; nothing matching goes to
    ``default`` (None: the ``FIDO_SLACK_CHANNEL`` setting). The channel is kept with the
    card, so its updates and thread replies follow it."""

    default: str | None = None
    rules: list[RouteRule] = Field(default_factory=list)


class DigestPolicy(_Strict):
    """Incidents scoring below ``below`` get no card of their own: they are listed in one
    digest message every ``interval_minutes`` (to ``channel``, else the default channel).
    One that later rises to ``below`` gets its card then. An incident asking for approval
    always gets a card."""

    below: int = Field(default=25, ge=0, le=101)
    interval_minutes: float = Field(default=60, gt=0)
    channel: str | None = None


class AskUserPolicy(_Strict):
    """Ask the affected user "was this you?" by direct message for the alerts selected by
    ``detectors`` or ``titles`` (case-insensitive globs, e.g. ``"*impossible travel*"``;
    none by default: messaging employees is opted into). The answer is a score signal:
    ``no_points`` (and the channel is alerted at once), ``yes_points``, and
    ``no_answer_points`` once ``timeout_minutes`` pass without a click."""

    detectors: list[str] = Field(default_factory=list)
    titles: list[str] = Field(default_factory=list)
    no_points: int = Field(default=30, ge=0, le=100)
    yes_points: int = Field(default=-20, ge=-100, le=0)
    no_answer_points: int = Field(default=10, ge=-100, le=100)
    timeout_minutes: float = Field(default=30, gt=0)


class ApprovalSla(_Strict):
    """A pending approval is reminded in the card's thread after ``remind_minutes``
    (mentioning the action's approver group, else ``group``), escalated after
    ``escalate_minutes`` to ``escalate_channel`` (else the thread) mentioning
    ``escalate_group``, and decided by ``on_timeout`` after ``timeout_minutes`` (None:
    never). ``act_on_timeout`` names the responders that act instead of being denied."""

    remind_minutes: float | None = Field(default=30, gt=0)
    group: str | None = Field(default=None, pattern=r"^S[A-Z0-9]+$")
    escalate_minutes: float | None = Field(default=60, gt=0)
    escalate_channel: str | None = None
    escalate_group: str | None = Field(default=None, pattern=r"^S[A-Z0-9]+$")
    timeout_minutes: float | None = Field(default=1440, gt=0)
    on_timeout: Literal["deny", "act"] = "deny"
    act_on_timeout: list[str] = Field(default_factory=list)

    def default_for(self, responder: str) -> Literal["deny", "act"]:
        return "act" if responder in self.act_on_timeout else self.on_timeout


class RetentionPolicy(_Strict):
    """Raw alert payloads, enrichment, dead letters and cached lookups older than ``days``
    are purged every ``interval_minutes`` (``pipeline/retention.py``); incidents, actions and
    the audit log are kept. ``days: null`` keeps everything."""

    days: int | None = Field(default=90, ge=1)
    interval_minutes: float = Field(default=60, gt=0)


class WebhookRate(_Strict):
    """How many deliveries each webhook token may make to one replica: ``per_second`` on
    average, up to ``burst`` at once; past it, ``429`` with ``Retry-After``."""

    per_second: float = Field(gt=0)
    burst: int | None = Field(default=None, ge=1)  # default: one second's worth (at least 1)


class Policy(_Strict):
    detectors: dict[str, DetectorPolicy] = Field(
        default_factory=lambda: {"generic": DetectorPolicy()}
    )
    sources: dict[str, SourcePolicy] = Field(default_factory=dict)
    enrichers: list[str] = Field(default_factory=lambda: ["active_directory"])
    enrichment_timeout_seconds: float = Field(default=10.0, gt=0)
    # events worked on at once per process: enrichment waits on the network, so many (at
    # 100 incidents/s with ~0.5 s in flight each, about 50 are in flight)
    worker_concurrency: int = Field(default=64, ge=1, le=256)
    correlation: CorrelationPolicy = Field(default_factory=CorrelationPolicy)
    scoring: Scoring = Field(default_factory=Scoring)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    actions: list[ActionPolicy] = Field(
        default_factory=lambda: [ActionPolicy(responder="ad_disable_account")]
    )
    approvers: list[str] = Field(default_factory=list)
    protected_accounts: list[str] = Field(
        default_factory=lambda: ["administrator", "krbtgt", "guest"]
    )
    allow_privileged_targets: bool = False
    max_auto_actions_per_hour: int = Field(default=5, ge=0)
    dry_run: bool = False
    # an Approve or Deny button older than this is refused: the card may no longer be true
    button_lifetime_hours: float = Field(default=24, gt=0)
    # per enricher: its options (its Options model), e.g. {virustotal: {api_key_env: VT_API_KEY}}
    enricher_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    lookups: LookupsPolicy = Field(default_factory=LookupsPolicy)
    privacy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)
    allowlist: Allowlist = Field(default_factory=Allowlist)
    suppressions: list[SuppressionRule] = Field(default_factory=list)
    # deliveries per webhook token and replica (None: unlimited)
    webhook_rate: WebhookRate | None = None
    # how long a suppression offered after a false-positive close lasts
    suppression_days: int = Field(default=30, ge=1, le=365)
    # where cards go, which go to the digest, whom to ask, how long approvals may wait
    routing: RoutingPolicy = Field(default_factory=RoutingPolicy)
    digest: DigestPolicy = Field(default_factory=DigestPolicy)
    ask_user: AskUserPolicy = Field(default_factory=AskUserPolicy)
    approval_sla: ApprovalSla = Field(default_factory=ApprovalSla)
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)

    @field_validator("actions")
    @classmethod
    def _one_options_per_responder(cls, actions: list[ActionPolicy]) -> list[ActionPolicy]:
        """One instance of each responder is built, so its rules cannot disagree on it."""
        first: dict[str, int] = {}
        for index, rule in enumerate(actions):
            earlier = first.setdefault(rule.responder, index)
            if earlier != index and actions[earlier].options != rule.options:
                raise ValueError(
                    f"actions {earlier} and {index} both name {rule.responder} with different "
                    "options; give the same options (one responder is built per name)"
                )
        return actions

    def detector(self, name: str) -> DetectorPolicy | None:
        policy = self.detectors.get(name)
        return policy if policy and policy.enabled else None

    def rule(self, responder: str) -> ActionPolicy:
        """The action rule that names ``responder`` (the first, if several do)."""
        for rule in self.actions:
            if rule.responder == responder:
                return rule
        return ActionPolicy(responder=responder)

    def is_protected(self, account: str) -> bool:
        """True for a protected account, in any of its forms (DOMAIN\\name, name@domain)
        and however it is spelt: both sides are compared after NFKC normalisation and case
        folding, without invisible characters or accents, with look-alike letters read as
        Latin (``account_skeleton``), so "ADMİNİSTRATOR" or "Administrator\\u200b" is
        protected when "administrator" is."""
        wanted = account_skeleton(account)
        return any(wanted == account_skeleton(p) for p in self.protected_accounts)


def load_policy(path: str | Path | None) -> Policy:
    """Read the policy YAML; ``None`` gives the built-in defaults.

    Raises ``ConfigError`` listing every problem in the file with its line and column
    (``pipeline/policy_file.py``)."""
    if path is None or str(path) == "":
        return Policy()
    from pipeline import policy_file  # it imports this module

    return policy_file.load_policy(path)
