"""Contain a user by ending their OpenVPN sessions and keeping them out until Undo.

Ending a session alone achieves little: the client reconnects within seconds. So the
responder also keeps the common name out, in one of two ways (``docs/responders/openvpn.md``):

* ``ccd_dir`` set: a file named after the common name in the server's client-config-dir
  with a ``disable`` line, which OpenVPN reads at every connection. Written before the
  sessions are ended (so the reconnect is refused) and atomically; an existing file keeps
  its content and gets the line appended; Undo restores it byte for byte, or deletes the
  file Fido created.
* no ``ccd_dir``: a :class:`SessionGuard` keeps a management connection open and ends the
  name's sessions again whenever it reconnects, for as long as the block lasts. The guard
  runs in one process, Fido's leading replica, which hands it the containments stored in
  the database every few seconds (:meth:`OpenVPNKillSession.hold`); any other process
  (another replica, ``fido respond``) ends the current sessions and leaves the keeping out
  to it.

The common name comes from the ``common_name`` template (``{account}``: the target's bare
account, case kept) and is validated before anything is sent or written.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import stat
import string
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from integrations.openvpn.guard import SessionGuard
from integrations.openvpn.management import (
    InvalidCommonName,
    ManagementBusy,
    ManagementEndpoint,
    common_name_problem,
    end_sessions,
    validate_common_name,
)
from pipeline.errors import IntegrationError, ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, Impact, ResponderResult, person_details, responders

log = logging.getLogger(__name__)

# What Fido adds to a client-config file; Undo looks for exactly these bytes.
FIDO_LINES = b"# disabled by Fido (openvpn_kill_session) until undone in Fido\ndisable\n"
_MAX_CCD_BYTES = 1 << 20
_NEW_FILE_MODE = 0o644  # OpenVPN reads client-config files after dropping privileges


class Options(BaseModel):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "management_port": 7505,
                    "password_env": "OPENVPN_MANAGEMENT_PASSWORD",
                    "ccd_dir": "/etc/openvpn/ccd",
                }
            ]
        },
    )

    management_host: str = Field(default="127.0.0.1", min_length=1)
    management_port: int = Field(ge=1, le=65535)
    # the NAME of the environment variable holding the management password
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    common_name: str = "{account}"
    ccd_dir: Path | None = None
    # the server runs with --management-client-auth: the guard admits every connection, so
    # it holds the interface even while nobody is blocked (guard mode only)
    client_auth: bool = False
    timeout: float = Field(default=5.0, gt=0, le=120)

    @field_validator("common_name")
    @classmethod
    def _only_account(cls, template: str) -> str:
        try:
            fields = [part for part in string.Formatter().parse(template) if part[1] is not None]
        except ValueError as exc:
            raise ValueError(f"is not a valid template ({exc})") from None
        if not fields:
            raise ValueError("must contain {account}")
        for _, name, spec, conversion in fields:
            if name != "account" or spec or conversion:
                raise ValueError(f"may only use the {{account}} placeholder, not {{{name}…}}")
        if problem := common_name_problem(template.format(account="a")):
            raise ValueError(f"does not make a valid common name: it {problem}")
        return template

    @field_validator("ccd_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @model_validator(mode="after")
    def _client_auth_needs_the_guard(self) -> Options:
        if self.client_auth and self.ccd_dir is not None:
            raise ValueError(
                "client_auth is for the session guard (no ccd_dir): with ccd_dir Fido does "
                "not answer the server's client-auth requests"
            )
        return self


# Inside the responder's class body ``Options`` is the class attribute, not a type mypy
# accepts in annotations; the methods are annotated with this name instead.
OpenVPNOptions = Options


@responders.register("openvpn_kill_session")
class OpenVPNKillSession:
    """End a user's OpenVPN sessions and keep them out until Undo."""

    name = "openvpn_kill_session"
    target_kind: Kind = "user"
    label = "end VPN session of"
    reversible = True
    # low: it ends one way in (the VPN) and Undo lets the user straight back in; their
    # account and everything else they use keep working
    impact = Impact.low
    Options = Options

    def __init__(
        self,
        options: OpenVPNOptions,
        *,
        endpoint: ManagementEndpoint,
        guard: SessionGuard | None = None,
    ) -> None:
        self.options = options
        self.endpoint = endpoint
        self._files = asyncio.Lock()  # one read-modify-write of a client-config file at a time
        self.holding = False  # this process runs the guard (Fido's leader calls hold())
        self.guard = None
        if options.ccd_dir is None:
            self.guard = guard or SessionGuard(
                endpoint.connect, timeout=endpoint.timeout, hold=options.client_auth
            )

    @classmethod
    def build(cls, options: OpenVPNOptions, context: Context) -> OpenVPNKillSession:
        """The responder for ``options``, its password read from the named variable."""
        password = SecretStr(context.secret(options.password_env)) if options.password_env else None
        endpoint = ManagementEndpoint(
            options.management_host,
            options.management_port,
            password=password,
            timeout=options.timeout,
        )
        return cls(options, endpoint=endpoint)

    def common_name_for(self, target: str) -> str:
        """The validated common name for ``target``; ResponderError when unsafe."""
        try:
            for char in target:
                if unicodedata.category(char)[0] == "C":
                    raise InvalidCommonName(f"holds the control character U+{ord(char):04X}")
            account = target.strip().rsplit("\\", 1)[-1].split("@", 1)[0]
            return validate_common_name(self.options.common_name.format(account=account))
        except InvalidCommonName as exc:
            raise ResponderError(f"Refused to end the VPN sessions of {target!r}: {exc}") from None

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            cn = self.common_name_for(target)
        except ResponderError as exc:
            return str(exc)
        return (
            f"End the VPN sessions of {target}{person_details(facts)} (common name {cn}) "
            f"on {self.endpoint} and keep them out until undone"
        )

    async def execute(self, target: str) -> ResponderResult:
        """Keep the name out first (file or guard), then end its sessions: a client that
        reconnects in between is refused or ended again, never let back in."""
        cn = self.common_name_for(target)
        if self.guard is not None and self.holding:
            return await self._execute_guarded(target, cn, self.guard)
        if self.guard is not None:
            return await self._execute_for_the_guard(target, cn)
        directory = _writable_directory(self.options.ccd_dir)
        path = directory / cn
        failed = f"Could not end the VPN sessions of {target}"
        async with self._files:
            try:
                # connect first: when the server cannot be reached, nothing is written
                client = await self.endpoint.connect()
            except IntegrationError as exc:
                raise ResponderError(f"{failed}: {exc}") from exc
            async with client:
                try:
                    change = await asyncio.to_thread(_disable, path)
                except OSError as exc:
                    raise ResponderError(f"Could not disable {target} in {path}: {exc}") from exc
                try:
                    ended = await end_sessions(client, cn)
                except IntegrationError as exc:
                    try:
                        await asyncio.to_thread(_revert, change)
                    except OSError as undo_exc:
                        raise ResponderError(
                            f"{failed}: {exc}; and could not take the disable out of {path} "
                            f"again: {undo_exc}"
                        ) from exc
                    raise ResponderError(f"{failed}: {exc}; {path} is as it was") from exc
        where = f"disabled {cn} in {directory}"
        if change.written is None:
            where = f"{cn} was already disabled in {path}, which Fido left unchanged"
        summary = (
            f"Ended {_sessions(ended)} of {target} (common name {cn}) and {where}"
            if ended
            else f"{target} had no VPN session; {where} so they cannot connect"
        )
        return ResponderResult(summary=summary, undo_data=change.undo_data(cn))

    async def _execute_guarded(self, target: str, cn: str, guard: SessionGuard) -> ResponderResult:
        already = cn in guard.blocked
        try:
            ended = await guard.block(cn)
        except IntegrationError as exc:
            if not already:
                await guard.unblock(cn)
            raise ResponderError(f"Could not end the VPN sessions of {target}: {exc}") from exc
        kept_out = f"Fido ends every new session of {cn} until undone"
        summary = (
            f"Ended {_sessions(ended)} of {target} (common name {cn}); {kept_out}"
            if ended
            else f"{target} had no VPN session; {kept_out}"
        )
        undo_data = {"mode": "guard", "common_name": cn, "already_blocked": already}
        return ResponderResult(summary=summary, undo_data=undo_data)

    async def _execute_for_the_guard(self, target: str, cn: str) -> ResponderResult:
        """Not the guard's process: end the sessions now over a connection of its own and
        leave the keeping out to the guard, which reads this action from the database.
        While the guard holds the one management connection, only it can end them."""
        undo_data = {"mode": "guard", "common_name": cn, "already_blocked": False}
        kept_out = (
            f"Fido's session guard (on the leading replica) ends every new session of {cn} "
            "until undone"
        )
        try:
            client = await self.endpoint.connect()
        except ManagementBusy as exc:
            return ResponderResult(
                summary=f"{exc}; Fido's session guard, which holds it on the leading replica, "
                f"ends the sessions of {target} (common name {cn}) within seconds and every "
                "new one until undone",
                undo_data=undo_data,
            )
        except IntegrationError as exc:
            raise ResponderError(f"Could not end the VPN sessions of {target}: {exc}") from exc
        async with client:
            try:
                ended = await end_sessions(client, cn)
            except IntegrationError as exc:
                raise ResponderError(f"Could not end the VPN sessions of {target}: {exc}") from exc
        summary = (
            f"Ended {_sessions(ended)} of {target} (common name {cn}); {kept_out}"
            if ended
            else f"{target} had no VPN session; {kept_out}"
        )
        return ResponderResult(summary=summary, undo_data=undo_data)

    async def hold(self, held: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """On Fido's leading replica, every few seconds: keep out exactly the names of the
        containments in force (this responder's succeeded, not undone actions, wherever
        they ran) — new ones are swept at once, undone or expired ones let in again. With
        ``ccd_dir`` the server's own files keep them out, and nothing needs holding."""
        if self.guard is None:
            return 0
        self.holding = True
        names = set()
        for target, data in held:
            if data.get("mode") != "guard" or not data.get("common_name"):
                continue
            try:
                names.add(validate_common_name(str(data["common_name"])))
            except InvalidCommonName as exc:
                log.warning("openvpn_kill_session: not holding %s: %s", target, exc)
        added, released = self.guard.reconcile(names)
        for name in sorted(added):
            log.info("openvpn_kill_session: the session guard now keeps %s out", name)
        for name in sorted(released):
            log.info("openvpn_kill_session: the session guard lets %s in again", name)
        return len(self.guard.blocked)

    async def release(self) -> None:
        """This replica no longer leads: close the guard's management connection, so the
        new leader's guard can take it."""
        self.holding = False
        if self.guard is not None:
            await self.guard.release()

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        """Let the name in again; the user's client reconnects by itself."""
        try:
            mode = undo_data["mode"]
            cn = validate_common_name(str(undo_data["common_name"]))
        except (KeyError, InvalidCommonName) as exc:
            raise ResponderError(f"Cannot undo for {target}: bad undo data ({exc})") from None
        if mode == "guard":
            return await self._undo_guarded(target, cn, bool(undo_data.get("already_blocked")))
        try:
            change = _CcdChange.from_undo_data(undo_data, cn)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResponderError(f"Cannot undo for {target}: bad undo data ({exc})") from None
        if change.path.parent != self.options.ccd_dir:
            # Fido only ever writes into the directory it is configured with
            raise ResponderError(
                f"Cannot undo for {target}: Fido disabled them in {change.path}, outside "
                f"ccd_dir ({self.options.ccd_dir}); remove the 'disable' line there by hand"
            )
        try:
            async with self._files:
                outcome = await asyncio.to_thread(_revert, change)
        except OSError as exc:
            raise ResponderError(f"Could not re-enable {target} in {change.path}: {exc}") from exc
        return ResponderResult(summary=_UNDONE[outcome].format(target=target, path=change.path))

    async def _undo_guarded(self, target: str, cn: str, already: bool) -> ResponderResult:
        if self.guard is None:
            raise ResponderError(
                f"Cannot undo for {target}: Fido now writes to a client-config-dir instead "
                f"of guarding sessions; {cn} is not blocked here"
            )
        if not self.holding:  # the guard's process reads the undo from the database
            return ResponderResult(
                summary=f"Fido's session guard (on the leading replica) stops ending the VPN "
                f"sessions of {target} (common name {cn}) within seconds; they can connect "
                "again unless another action still keeps them out"
            )
        if already:
            return ResponderResult(
                summary=f"Left {cn} blocked: an earlier action blocked it before this one"
            )
        if not await self.guard.unblock(cn):
            return ResponderResult(summary=f"{cn} was not blocked (any more); nothing to undo")
        return ResponderResult(
            summary=f"Stopped ending the VPN sessions of {target} (common name {cn}); "
            "they can connect again"
        )


def _sessions(count: int) -> str:
    return f"{count} VPN session" + ("" if count == 1 else "s")


def _writable_directory(directory: Path | None) -> Path:
    assert directory is not None
    if not directory.is_dir():
        raise ResponderError(f"ccd_dir {directory} does not exist or is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ResponderError(f"ccd_dir {directory} is not writable by Fido (uid {os.geteuid()})")
    return directory


# -- the client-config file ------------------------------------------------------------


@dataclass(frozen=True)
class _CcdChange:
    """A client-config file before and after Fido: what Undo needs."""

    path: Path
    previous: bytes | None  # None: there was no file
    written: bytes | None  # None: it already said "disable"; Fido wrote nothing

    def undo_data(self, cn: str) -> dict[str, Any]:
        return {
            "mode": "ccd",
            "common_name": cn,
            "path": str(self.path),
            "previous": _b64(self.previous),
            "written": _b64(self.written),
        }

    @classmethod
    def from_undo_data(cls, data: dict[str, Any], cn: str) -> _CcdChange:
        path = Path(data["path"])
        if path.name != cn or not path.is_absolute():
            raise ValueError(f"{path} is not a client-config file for {cn}")
        return cls(path, _unb64(data["previous"]), _unb64(data["written"]))


_UNDONE = {
    "unchanged": "Left {target} disabled in {path}: it was disabled there before Fido acted",
    "removed": "Re-enabled {target}: removed {path}, which Fido had written",
    "restored": "Re-enabled {target}: put {path} back exactly as it was before",
    "edited": "Re-enabled {target}: removed Fido's 'disable' lines from {path}, which was "
    "changed since; the rest of it is kept",
    "gone": "{path} is gone already; {target} is not disabled there",
    "absent": "Fido's 'disable' lines are no longer in {path}; nothing to undo",
}


def _disable(path: Path) -> _CcdChange:
    previous = _read(path)
    if previous is not None and _says_disable(previous):
        return _CcdChange(path, previous, None)
    base = previous or b""
    written = base + (b"\n" if base and not base.endswith(b"\n") else b"") + FIDO_LINES
    _write_atomically(path, written)
    return _CcdChange(path, previous, written)


def _revert(change: _CcdChange) -> str:
    """Take Fido's lines out of the file again; which of ``_UNDONE`` happened."""
    if change.written is None:
        return "unchanged"
    current = _read(change.path)
    if current is None:
        return "gone"
    if current == change.written:
        if change.previous is None:
            change.path.unlink()
            _sync_directory(change.path.parent)
            return "removed"
        _write_atomically(change.path, change.previous)
        return "restored"
    if FIDO_LINES in current:
        _write_atomically(change.path, current.replace(FIDO_LINES, b"", 1))
        return "edited"
    return "absent"


def _read(path: Path) -> bytes | None:
    """The file's bytes; None when there is none. Refuses links and anything not a file."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is a link or not a regular file; Fido does not replace it")
    if info.st_size > _MAX_CCD_BYTES:
        raise OSError(f"{path} is larger than {_MAX_CCD_BYTES} bytes")
    return path.read_bytes()


def _says_disable(content: bytes) -> bool:
    words = (line.split(maxsplit=1) for line in content.splitlines())
    return any(word and word[0] in (b"disable", b"--disable") for word in words)


def _write_atomically(path: Path, content: bytes) -> None:
    """Write a sibling temporary file and rename it over ``path``: OpenVPN reads either
    the old file or the new one, never half of one. Mode and owner are kept."""
    try:
        before = path.stat()
        mode, owner = before.st_mode & 0o7777, (before.st_uid, before.st_gid)
    except FileNotFoundError:
        mode, owner = _NEW_FILE_MODE, None
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".fido-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        if owner is not None and os.geteuid() == 0:
            os.chown(temporary, *owner)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _b64(content: bytes | None) -> str | None:
    return None if content is None else base64.b64encode(content).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value, validate=True)
