"""A living relay reused: `pairing up` without a deploy when the stack's relay is alive and nothing of it changed.

After each deploy, `pairing up` records what it made (record_relay): the outputs, and the settings the relay's
instance is made from (relay_facts: its network, key, port, type, image, latest end and region; not the guests,
who are a live list on the relay, nor the TTL, which can be moved). The next `pairing up` for that stack and
backend reuses the relay (reuse) when the settings are the same, the relay answers with its pinned key through
the tunnel account, and its end is no sooner than the asked TTL or can be moved there: no Pulumi call, the
guests set live by the hook at its start, the tunnel up. Anything else, and `pairing up` deploys as before.

The record is input like any outputs: read back through StackOutputs.from_json, its facts compared as parsed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .accounts import TUNNEL_USER
from .hook.live import remember_asked, trusted_end
from .hook.own_sshd import private_folder, state_base
from .hook.preflight import PreflightError, load_identity, relay_endpoint
from .outputs import OutputsError, StackOutputs
from .relay_guests import RelayError, RelayGuests
from .settings import Settings
from .tunnel.spec import TunnelFatal

# `pairing up`'s checks a reused relay does not need: no Pulumi call and no AWS call is made.
NOT_NEEDED_WARM = frozenset({"pulumi", "aws credentials"})


def relay_facts(settings: Settings, region: str | None) -> dict[str, Any]:
    """What the relay's instance and network are made from, as comparable values."""
    return {
        "hostPublicKey": settings.host_public_key.bare,
        "tunnelPort": settings.tunnel_port,
        "allowedCidrs": [str(c) for c in settings.allowed_cidrs],
        "instanceType": settings.instance_type,
        "relayImage": settings.relay_image,
        "maxTtlMinutes": settings.max_ttl_minutes,
        "region": region,
    }


def record_path(stack: str, backend: str) -> Path:
    digest = hashlib.sha256(f"{backend}\0{stack}".encode()).hexdigest()[:16]
    return state_base() / "relays" / f"{digest}.json"


def record_relay(stack: str, backend: str, settings: Settings, region: str | None, outputs: dict) -> None:
    """What `pairing up` deployed, for the next one (mode 600: the outputs name the relay and its key)."""
    path = record_path(stack, backend)
    private_folder(path.parent)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"stack": stack, "relay": relay_facts(settings, region), "outputs": outputs}, out)
    os.replace(temp, path)


def forget_relay(stack: str, backend: str) -> None:
    record_path(stack, backend).unlink(missing_ok=True)


def reuse(stack: str, backend: str, settings: Settings, region: str | None, identity: Path | None,
          say: Callable[[str], None] = print) -> StackOutputs | None:
    """The recorded relay's outputs for this run's settings (its end moved to the TTL if need be), or None
    (said why) when it cannot be reused and `pairing up` must deploy."""
    try:
        record = json.loads(record_path(stack, backend).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        say(f"the record of the last relay cannot be read ({exc}); deploying")
        return None
    if not isinstance(record, dict) or record.get("stack") != stack:
        say("the record of the last relay is not this stack's; deploying")
        return None
    if record.get("relay") != relay_facts(settings, region):
        say("the relay's settings changed since it was made; deploying")
        return None
    try:
        outputs = StackOutputs.from_json(record.get("outputs"), source="the record of the last relay")
        key = load_identity(identity, settings.host_public_key)
        relay = RelayGuests(relay_endpoint(outputs, TUNNEL_USER), key.key)
        end = relay.end()
        wanted = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=settings.ttl_minutes)
        if trusted_end(outputs, end.ends) < wanted:  # (an end the host never asked for is not believed)
            if end.latest < wanted:
                say(f"the living relay ends at the latest at {end.latest:%Y-%m-%dT%H:%M:%SZ}, before the asked TTL; "
                    "deploying")
                return None
            end = relay.move_end(wanted)
            remember_asked(outputs, wanted)
    except (OutputsError, PreflightError, RelayError, TunnelFatal, OSError) as exc:
        say(f"the last relay cannot be reused ({exc}); deploying")
        return None
    say(f"reusing the living relay {outputs.relay_address} ({outputs.relay_fingerprint}), which ends at "
        f"{end.ends:%Y-%m-%dT%H:%M:%SZ}: no deploy")
    return replace(outputs, guest_keys=settings.guest_keys, viewer_keys=settings.viewer_keys,
                   host_user=settings.host_user, tmux_session=settings.tmux_session,
                   host_sshd_key=settings.host_sshd_key, expires_at=trusted_end(outputs, end.ends))
