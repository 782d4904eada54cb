"""The whole Pulumi program (__main__.py) under Pulumi's own unit-test mocks:
no CLI, no AWS. Each test runs the program with a config and inspects the
resources it registered and the outputs it exported."""

from __future__ import annotations

import base64
import datetime as dt
import getpass
import json
import hashlib
import runpy
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from pairing.guest_documents import command, ssh_config
from pairing.outputs import OUTPUT_NAMES, StackOutputs

PROJECT = Path(__file__).resolve().parent.parent
PUBLIC_IP = "203.0.113.10"
LAUNCH_TIME = "2026-11-26T15:00:00Z"
AMI = {"x86_64": "ami-0amd64noble", "arm64": "ami-0arm64noble"}


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """Mocks that answer like AWS and the TLS provider would, and remember what was asked."""

    resources: dict[str, pulumi.runtime.MockResourceArgs] = field(default_factory=dict)
    calls: list[pulumi.runtime.MockCallArgs] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources[args.typ] = args
        state = dict(args.inputs)
        if args.typ == "tls:index/privateKey:PrivateKey":
            # A real key, as the TLS provider would make.
            key = ed25519.Ed25519PrivateKey.generate()
            public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            blob = base64.b64decode(public.split()[1])
            state.update(
                private_key_openssh=key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
                ).decode(),
                public_key_openssh=public.decode() + "\n",
                public_key_fingerprint_sha256="SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
            )
        if args.typ == "aws:ec2/instance:Instance":
            state.update(public_ip=PUBLIC_IP, arn="arn:aws:ec2:eu-central-1:123456789012:instance/i-0pairing")
        if args.typ == "aws:ec2/keyPair:KeyPair":
            state.update(key_name=args.name + "-a1b2c3")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args)
        if args.token == "aws:ec2/getAmi:getAmi":
            arch = next(f["values"][0] for f in args.args["filters"] if f["name"] == "architecture")
            return {"id": AMI[arch], "architecture": arch}
        if args.token == "aws:ec2/getInstance:getInstance":
            return {"id": args.args["instanceId"], "launchTime": LAUNCH_TIME}
        raise AssertionError(f"unexpected call {args.token}")


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker for a secret value


def revealed(value):
    """Inputs marked secret reach the mocks wrapped; this returns the plain value."""
    assert isinstance(value, dict) and SECRET_SIG in value, "expected a secret"
    return value["value"]


@dataclass
class Run:
    mocks: Recorder
    program: dict

    def inputs(self, typ: str) -> dict:
        return self.mocks.resources[typ].inputs


def example_config(keys) -> dict[str, object]:
    """Pulumi.dev.yaml as shipped, with the host's sshd key (normally read from /etc/ssh) given."""
    config = yaml.safe_load((PROJECT / "Pulumi.dev.yaml").read_text())["config"]
    return {**config, "pairing:hostSshdKey": keys["sshd"].public_line}


def run_program(config: dict[str, object], mocks: Recorder | None = None) -> Run:
    """Config as `pulumi up` would hand it over (lists as JSON text), then the program."""
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    mocks = mocks or Recorder()
    pulumi.runtime.set_mocks(mocks, project="pairing", stack="dev", preview=False)
    program = runpy.run_path(str(PROJECT / "__main__.py"))
    return Run(mocks, program)


def after_deploy(run: Run, check):
    """Resources register asynchronously: check(outputs) once every output has
    resolved, which is after the resources they come from were registered."""
    outputs = run.program["relay"].outputs
    return pulumi.Output.all(**outputs).apply(lambda values: check(values) or True)


@pulumi.runtime.test
def test_example_stack(keys):
    run = run_program(example_config(keys))

    def check(out):
        group = run.inputs("aws:ec2/securityGroup:SecurityGroup")
        assert [(r["fromPort"], r["toPort"], r["protocol"], r["cidrBlocks"]) for r in group["ingress"]] == [
            (22, 22, "tcp", ["0.0.0.0/0"])
        ]
        assert group["egress"] == []
        assert run.inputs("aws:ec2/keyPair:KeyPair")["publicKey"].endswith(" pairing-example-host")
        assert run.inputs("tls:index/privateKey:PrivateKey")["algorithm"] == "ED25519"

        instance = run.inputs("aws:ec2/instance:Instance")
        assert instance["instanceType"] == "t3.micro"
        assert instance["ami"] == AMI["x86_64"]
        assert instance["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
        assert instance["rootBlockDevice"]["encrypted"] is True
        assert instance["instanceInitiatedShutdownBehavior"] == "terminate"
        assert instance["userDataReplaceOnChange"] is True
        assert instance["creditSpecification"] == {"cpuCredits": "standard"}
        assert instance["tags"]["pairing:stack"] == "dev" and instance["tags"]["Name"] == "pairing-dev"
        assert instance["keyName"] == "relay-host-a1b2c3"
        assert instance["vpcSecurityGroupIds"] == ["relay-ssh-id"]
        user_data = yaml.safe_load(revealed(instance["userData"]))
        assert [u["name"] for u in user_data["users"]] == ["pair", "tunnel"]

        ami_call = next(c for c in run.mocks.calls if c.token == "aws:ec2/getAmi:getAmi")
        assert ami_call.args["owners"] == ["099720109477"] and ami_call.args["mostRecent"] is True
        assert {f["name"]: f["values"] for f in ami_call.args["filters"]}["name"] == [
            "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
        ]

        assert tuple(out) == OUTPUT_NAMES
        parsed = StackOutputs.from_json(out)
        assert parsed.relay_address == PUBLIC_IP and parsed.relay_port == 22 and parsed.tunnel_port == 1337
        relay_key = parsed.relay_host_keys[0]
        assert out["relayKnownHosts"] == f"{PUBLIC_IP} {relay_key.bare}\n"
        assert out["relayHostKeyFingerprint"] == relay_key.fingerprint == parsed.relay_fingerprint
        # The relay's key in the outputs is the one the relay boots with.
        assert user_data["ssh_keys"]["ed25519_public"] == relay_key.bare
        assert out["expiresAt"] == "2026-11-26T19:00:00Z"
        assert parsed.expires_at == dt.datetime(2026, 11, 26, 19, 0, tzinfo=dt.timezone.utc)
        assert parsed.instance_id == "relay-instance-id"
        assert parsed.tmux_session == "pair"
        assert parsed.host_user == getpass.getuser()  # not set in Pulumi.dev.yaml: the user running the program
        assert parsed.host_sshd_key.bare == " ".join(keys["sshd"].public_line.split()[:2])
        assert f"HostName {PUBLIC_IP}" in out["guestSshConfig"] and "ProxyJump pairing-relay" in out["guestSshConfig"]
        assert out["guestCommand"].startswith("ssh ") and "\n" not in out["guestCommand"]
        # What the program exports for people using Pulumi alone is what the host side renders itself.
        assert out["guestSshConfig"] == ssh_config(parsed.guest_route)
        assert out["guestCommand"] == command(parsed.guest_route)

    return after_deploy(run, check)


@pulumi.runtime.test
def test_viewers_ipv6_arm64(keys):
    config = {
        **example_config(keys),
        "pairing:guestKeys": [keys["guest"].public_line],
        "pairing:viewerKeys": [keys["viewer"].public_line, keys["guest2"].public_line],
        "pairing:hostPublicKey": keys["host"].public_line,
        "pairing:allowedCidrs": ["198.51.100.0/24", "2001:db8:1::/48", "203.0.113.7/32"],
        "pairing:instanceType": "t4g.micro",
        "pairing:tunnelPort": "2222",
        "pairing:ttlMinutes": "30",
        "pairing:hostUser": "alice",
        "pairing:tmuxSession": "mob",
    }
    run = run_program(config)

    def check(out):
        ingress = run.inputs("aws:ec2/securityGroup:SecurityGroup")["ingress"]
        assert [(r.get("cidrBlocks"), r.get("ipv6CidrBlocks")) for r in ingress] == [
            (["198.51.100.0/24", "203.0.113.7/32"], None),
            (None, ["2001:db8:1::/48"]),
        ]
        instance = run.inputs("aws:ec2/instance:Instance")
        assert instance["instanceType"] == "t4g.micro" and instance["ami"] == AMI["arm64"]
        ami_call = next(c for c in run.mocks.calls if c.token == "aws:ec2/getAmi:getAmi")
        filters = {f["name"]: f["values"] for f in ami_call.args["filters"]}
        assert filters["name"] == ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*"]
        assert filters["architecture"] == ["arm64"]
        user_data = yaml.safe_load(revealed(instance["userData"]))
        pair = next(u for u in user_data["users"] if u["name"] == "pair")
        assert [line.split()[-1] for line in pair["ssh_authorized_keys"]] == ["guest@test", "viewer@test", "guest2@test", "host@test"]
        assert all('permitopen="localhost:2222"' in line for line in pair["ssh_authorized_keys"])
        assert ["/usr/local/sbin/pairing-ttl", "arm", "30"] in user_data["runcmd"]

        assert out["tunnelPort"] == 2222 and out["hostUser"] == "alice" and out["tmuxSession"] == "mob"
        assert out["expiresAt"] == "2026-11-26T15:30:00Z"
        assert "Port 2222" in out["guestSshConfig"] and "User alice" in out["guestSshConfig"]

    return after_deploy(run, check)


@pulumi.runtime.test
def test_user_data_and_private_key_stay_secret(keys):
    relay = run_program(example_config(keys)).program["relay"]

    # (The private key's own outputs are made secret by the engine, from
    # pulumi_tls's additional_secret_outputs; mocks have no engine.)
    async def secrecy():
        return await relay.instance.user_data.is_secret()

    def check(secret):
        assert secret is True

    return pulumi.Output.from_input(secrecy()).apply(check)


def test_bad_config_registers_nothing(keys):
    mocks = Recorder()

    @pulumi.runtime.test  # waits for any registration the program started
    def program():
        with pytest.raises(pulumi.RunError, match=r"^pairing:tunnelPort: 70000 is out of range"):
            run_program({**example_config(keys), "pairing:tunnelPort": "70000"}, mocks)

    program()
    assert mocks.resources == {} and mocks.calls == []


def test_guest_ssh_config_is_valid_for_openssh(keys, tmp_path):
    """The real ssh parses the generated config and resolves the route from it."""
    from pairing.guest_documents import GuestRoute, ssh_config
    from pairing.sshkeys import parse_public_key

    route = GuestRoute(PUBLIC_IP, 22, parse_public_key(keys["sshd"].public_line), 1337, "alice", parse_public_key(keys["host"].public_line))
    path = tmp_path / "pairing.conf"
    path.write_text(ssh_config(route))
    result = subprocess.run(["ssh", "-G", "-F", str(path), "pairing"], capture_output=True, text=True, check=True)
    seen = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert seen["hostname"] == "localhost" and seen["port"] == "1337" and seen["user"] == "alice"
    assert seen["proxyjump"] == "pairing-relay"
    assert seen["stricthostkeychecking"] == "true"
    assert seen["hostkeyalias"] == "pairing-host"
