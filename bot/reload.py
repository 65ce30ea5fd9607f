"""Reload the policy on SIGHUP without a restart.

``fido serve`` calls ``install_policy_reload(loop, settings.config, apply)``; ``kill -HUP``
then re-reads the policy file. A valid policy is handed to ``apply`` (which swaps in what
can change at once: scoring, thresholds, correlation, suppressions, actions, approvers,
protected accounts); an invalid one is refused with every problem logged, and the policy
in force stays.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import FidoError
from pipeline.policy import Policy
from pipeline.policy_file import PolicyFileError, load_policy

log = logging.getLogger(__name__)


def install_policy_reload(
    loop: asyncio.AbstractEventLoop,
    path: str | Path | None,
    apply: Callable[[Policy], None],
) -> None:
    """Re-read the policy at ``path`` on each SIGHUP and pass it to ``apply`` if valid.

    Unix only, and from the thread running ``loop`` (``loop.add_signal_handler``)."""
    loop.add_signal_handler(signal.SIGHUP, reload_policy, path, apply)


def reload_policy(path: str | Path | None, apply: Callable[[Policy], None]) -> bool:
    """Read the policy at ``path``; True when it was valid and applied."""
    if path is None or str(path) == "":
        log.warning("SIGHUP: no policy file configured (FIDO_CONFIG), nothing to reload")
        return False
    try:
        policy = load_policy(path)
    except PolicyFileError as exc:
        problems = "\n".join(str(problem) for problem in exc.problems)
        log.error("policy not reloaded, keeping the previous one:\n%s", problems)
        return False
    try:
        apply(policy)
    except FidoError as exc:
        log.error("policy from %s is valid but could not be applied: %s", path, exc)
        return False
    log.info("policy reloaded from %s", path)
    return True
