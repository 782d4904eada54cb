"""The whole Pulumi program (__main__.py) under Pulumi's own unit-test mocks:
no CLI, no AWS. Each test runs the program with a config and inspects the
resources it registered and the outputs it exported."""

from __future__ import annotations

import base64
import datetime as dt
import getpass
import hashlib
import ipaddress
import json
import os
import runpy
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from pairing.guest_documents import command, ssh_config
from pairing.outputs import OUTPUT_NAMES, StackOutputs

from .harness import make_key

pytestmark = pytest.mark.pure  # needs neither root nor the relay tools (tests/conftest.py)

PROJECT = Path(__file__).resolve().parent.parent
PUBLIC_IP = "203.0.113.10"
VPC_IPV6 = "2001:db8:1200:ab00::/56"  # as Amazon would assign a VPC (documentation prefix here)
RELAY_IPV6 = "2001:db8:1200:ab00::1f"
LAUNCH_TIME = "2026-11-26T15:00:00Z"
AMI = {"x86_64": "ami-0a1b2c3d4e5f60001", "arm64": "ami-0a1b2c3d4e5f60002"}
ZONES = ("eu-central-1a", "eu-central-1b", "eu-central-1c")
LOCAL_ZONE = "eu-central-1-ham-1a"  # a Local Zone the account opted into
# What RunInstances and ImportKeyPair refuse, as AWS words it.
NO_DEFAULT_VPC = "VPCIdNotSpecified: No default VPC for this user"
IMPORTABLE_KEYS = ("ssh-rsa", "ssh-ed25519")


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """Mocks that answer like AWS and the TLS provider would, refuse what AWS refuses
    (in an account without a default VPC), and remember what was asked."""

    partition: str = "aws"
    region: str = "eu-central-1"
    offered_in: tuple[str, ...] = ZONES + (LOCAL_ZONE,)  # zones that offer the instance type
    resources: dict[str, pulumi.runtime.MockResourceArgs] = field(default_factory=dict)
    requests: dict[str, object] = field(default_factory=dict)  # type -> the registration as sent, options included
    calls: list[pulumi.runtime.MockCallArgs] = field(default_factory=list)

    host_key: dict | None = None  # the relay's key as the TLS provider's state (tls_state); None: a new one

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources[args.typ] = args
        state = dict(args.inputs)
        if args.typ == "tls:index/privateKey:PrivateKey":
            state.update(self.host_key or tls_state(ed25519.Ed25519PrivateKey.generate()))
        if args.typ == "aws:ec2/vpc:Vpc":
            state.update(ipv6CidrBlock=VPC_IPV6 if args.inputs.get("assignGeneratedIpv6CidrBlock") else "")
        if args.typ == "aws:ec2/subnet:Subnet":
            block = ipaddress.ip_network(args.inputs["ipv6CidrBlock"])
            assert block.prefixlen == 64 and block.subnet_of(ipaddress.ip_network(VPC_IPV6)), "InvalidSubnet.Range"
        if args.typ == "aws:ec2/securityGroup:SecurityGroup" and not args.inputs.get("vpcId"):
            raise Exception(NO_DEFAULT_VPC)
        if args.typ == "aws:ec2/keyPair:KeyPair":
            if args.inputs["publicKey"].split()[0] not in IMPORTABLE_KEYS:
                raise Exception("InvalidKey.Format: Key is not in valid OpenSSH public key format")
            state.update(key_name=args.name + "-a1b2c3")
        if args.typ == "aws:ec2/instance:Instance":
            if not args.inputs.get("subnetId"):
                raise Exception(NO_DEFAULT_VPC)
            # The launch's own choice wins over the subnet's map_public_ip_on_launch.
            subnet = self.resources["aws:ec2/subnet:Subnet"].inputs
            public = args.inputs.get("associatePublicIpAddress", subnet.get("mapPublicIpOnLaunch", False))
            state.update(
                public_ip=PUBLIC_IP if public else "",
                ipv6_addresses=[RELAY_IPV6] if args.inputs.get("ipv6AddressCount") else [],
                arn="arn:aws:ec2:eu-central-1:123456789012:instance/i-0pairing",
            )
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args)
        if args.token == "aws:index/getRegion:getRegion":
            return {"id": self.region, "region": self.region, "name": self.region}
        if args.token == "aws:index/getPartition:getPartition":
            return {"id": self.partition, "partition": self.partition}
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            opted_in = {f["name"]: f["values"] for f in args.args.get("filters", [])}.get("opt-in-status")
            names = ZONES if opted_in == ["opt-in-not-required"] else ZONES + (LOCAL_ZONE,)
            return {"id": self.region, "names": list(names), "zoneIds": []}
        if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            assert args.args["locationType"] == "availability-zone"
            [wanted] = next(f["values"] for f in args.args["filters"] if f["name"] == "instance-type")
            return {"id": self.region, "instanceTypes": [wanted] * len(self.offered_in),
                    "locations": list(self.offered_in), "locationTypes": ["availability-zone"] * len(self.offered_in)}
        if args.token == "aws:ec2/getAmi:getAmi":
            arch = next(f["values"][0] for f in args.args["filters"] if f["name"] == "architecture")
            return {"id": AMI[arch], "architecture": arch}
        if args.token == "aws:ec2/getInstance:getInstance":
            return {"id": args.args["instanceId"], "launchTime": LAUNCH_TIME}
        raise AssertionError(f"unexpected call {args.token}")


def tls_state(key: ed25519.Ed25519PrivateKey) -> dict:
    """A real key, as the TLS provider makes it and the stack's state then keeps it."""
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(public.split()[1])
    return dict(
        private_key_openssh=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode(),
        public_key_openssh=public.decode() + "\n",
        public_key_fingerprint_sha256="SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
    )


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

    def options(self, typ: str):
        """The registration as the program sent it to the engine (ignoreChanges, dependencies)."""
        return self.mocks.requests[typ]


def example_config(keys) -> dict[str, object]:
    """Pulumi.dev.yaml as shipped, with the host's sshd key (normally pairing's own, from the data folder) given."""
    config = yaml.safe_load((PROJECT / "Pulumi.dev.yaml").read_text())["config"]
    return {**config, "pairing:hostSshdKey": keys["sshd"].public_line}


def run_program(config: dict[str, object], mocks: Recorder | None = None) -> Run:
    """Config as `pulumi up` would hand it over (lists as JSON text), then the program."""
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    mocks = mocks or Recorder()
    pulumi.runtime.set_mocks(mocks, project="pairing", stack="dev", preview=False)
    # The mocks see inputs only; resource options reach the engine in the request itself.
    monitor = pulumi.runtime.settings.get_monitor()
    register = monitor.RegisterResource

    def recording(request):
        if request.type != "pulumi:pulumi:Stack":  # the engine's root, not a resource of the program
            mocks.requests[request.type] = request
        return register(request)

    monitor.RegisterResource = recording
    program = runpy.run_path(str(PROJECT / "__main__.py"))
    return Run(mocks, program)


def after_deploy(run: Run, check):
    """Resources register asynchronously: check(outputs) once every output has
    resolved, which is after the resources they come from were registered."""
    outputs = run.program["relay"].outputs
    return pulumi.Output.all(**outputs).apply(lambda values: check(values) or True)


NETWORK = {
    "aws:ec2/vpc:Vpc", "aws:ec2/internetGateway:InternetGateway", "aws:ec2/subnet:Subnet",
    "aws:ec2/routeTable:RouteTable", "aws:ec2/routeTableAssociation:RouteTableAssociation",
}
GRAPH = NETWORK | {
    "pairing:index:PairingRelay", "tls:index/privateKey:PrivateKey", "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/instance:Instance",
}


def check_network(run: Run, zone: str = "eu-central-1a") -> None:
    """Its own dual-stack network, every time: an account may have no default VPC."""
    assert set(run.mocks.resources) == GRAPH  # no EC2 key pair
    vpc = run.inputs("aws:ec2/vpc:Vpc")
    assert vpc["cidrBlock"] == "10.0.0.0/16" and vpc["assignGeneratedIpv6CidrBlock"] is True
    assert run.inputs("aws:ec2/internetGateway:InternetGateway")["vpcId"] == "relay-vpc-id"
    subnet = run.inputs("aws:ec2/subnet:Subnet")
    assert subnet["vpcId"] == "relay-vpc-id" and subnet["availabilityZone"] == zone
    assert subnet["cidrBlock"] == "10.0.0.0/24" and subnet["mapPublicIpOnLaunch"] is True
    assert subnet["ipv6CidrBlock"] == "2001:db8:1200:ab00::/64" and subnet["assignIpv6AddressOnCreation"] is True
    routes = run.inputs("aws:ec2/routeTable:RouteTable")
    assert routes["vpcId"] == "relay-vpc-id"
    assert [(r.get("cidrBlock"), r.get("ipv6CidrBlock"), r["gatewayId"]) for r in routes["routes"]] == [
        ("0.0.0.0/0", None, "relay-igw-id"), (None, "::/0", "relay-igw-id")]
    association = run.inputs("aws:ec2/routeTableAssociation:RouteTableAssociation")
    assert (association["subnetId"], association["routeTableId"]) == ("relay-public-id", "relay-routes-id")
    assert run.inputs("aws:ec2/securityGroup:SecurityGroup")["vpcId"] == "relay-vpc-id"
    instance = run.inputs("aws:ec2/instance:Instance")
    assert instance["subnetId"] == "relay-public-id" and instance["ipv6AddressCount"] == 1
    assert "keyName" not in instance
    # The launch does not wait for the routes (the gateway, its table and the association): it overlaps
    # them, off the cold deploy's critical path (bench/README.md); `up` still ends only once they exist.
    assert not any("aws:ec2/routeTable" in urn or "aws:ec2/internetGateway" in urn
                   for urn in run.options("aws:ec2/instance:Instance").dependencies)


def ami_filters(run: Run) -> dict:
    [call] = [c for c in run.mocks.calls if c.token == "aws:ec2/getAmi:getAmi"]
    assert call.args["owners"] == ["136693071363"] and call.args["mostRecent"] is True  # Debian's own account
    return {f["name"]: f["values"] for f in call.args["filters"]}


@pulumi.runtime.test
def test_example_stack(keys):
    run = run_program(example_config(keys))

    def check(out):
        check_network(run)
        group = run.inputs("aws:ec2/securityGroup:SecurityGroup")
        assert [(r["fromPort"], r["toPort"], r["protocol"], r["cidrBlocks"]) for r in group["ingress"]] == [
            (22, 22, "tcp", ["0.0.0.0/0"])
        ]
        assert group["egress"] == []
        assert run.inputs("tls:index/privateKey:PrivateKey")["algorithm"] == "ED25519"

        instance = run.inputs("aws:ec2/instance:Instance")
        assert instance["instanceType"] == "t3.micro"
        assert instance["ami"] == AMI["x86_64"]
        # The image found on the first deploy stays: a newer Debian 13 would replace the relay.
        assert list(run.options("aws:ec2/instance:Instance").ignoreChanges) == ["ami"]
        assert instance["associatePublicIpAddress"] is True
        assert instance["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
        assert instance["rootBlockDevice"]["encrypted"] is True
        assert instance["instanceInitiatedShutdownBehavior"] == "terminate"
        assert instance["userDataReplaceOnChange"] is True
        assert instance["creditSpecification"] == {"cpuCredits": "standard"}
        assert instance["tags"]["pairing:stack"] == "dev" and instance["tags"]["Name"] == "pairing-dev"
        assert instance["vpcSecurityGroupIds"] == ["relay-ssh-id"]
        user_data = yaml.safe_load(revealed(instance["userData"]))
        assert [u["name"] for u in user_data["users"]] == ["pair", "tunnel", "pairing-keys"]
        assert ami_filters(run) == {"name": ["debian-13-amd64-*"], "architecture": ["x86_64"], "virtualization-type": ["hvm"]}

        assert tuple(out) == OUTPUT_NAMES
        parsed = StackOutputs.from_json(out)
        assert parsed.relay_address == PUBLIC_IP and parsed.relay_port == 22 and parsed.tunnel_port == 1337
        assert parsed.relay_ipv6_address == RELAY_IPV6
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
def test_viewers_dual_stack_arm64(keys):
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
        check_network(run)
        ingress = run.inputs("aws:ec2/securityGroup:SecurityGroup")["ingress"]
        assert [(r.get("cidrBlocks"), r.get("ipv6CidrBlocks")) for r in ingress] == [
            (["198.51.100.0/24", "203.0.113.7/32"], None),
            (None, ["2001:db8:1::/48"]),
        ]
        instance = run.inputs("aws:ec2/instance:Instance")
        assert instance["instanceType"] == "t4g.micro" and instance["ami"] == AMI["arm64"]
        assert instance["associatePublicIpAddress"] is True
        assert ami_filters(run) == {"name": ["debian-13-arm64-*"], "architecture": ["arm64"], "virtualization-type": ["hvm"]}
        user_data = yaml.safe_load(revealed(instance["userData"]))
        pair = next(u for u in user_data["users"] if u["name"] == "pair")
        assert "ssh_authorized_keys" not in pair  # the guests are the relay's live list
        guests_script = next(f["content"] for f in user_data["write_files"] if f["path"].endswith("/pairing-guests"))
        # the restriction it adds to each guest's key: this port only
        assert """OPTIONS = 'restrict,port-forwarding,permitopen="localhost:2222",""" in guests_script
        assert ["/usr/local/sbin/pairing-ttl", "arm", "30", "1440", "tunnel"] in user_data["runcmd"]

        # IPv4 guests and the host's tunnel use the IPv4 address; IPv6 guests may use the other.
        assert out["relayAddress"] == PUBLIC_IP and out["relayIpv6Address"] == RELAY_IPV6
        assert out["tunnelPort"] == 2222 and out["hostUser"] == "alice" and out["tmuxSession"] == "mob"
        assert out["expiresAt"] == "2026-11-26T15:30:00Z"
        assert "Port 2222" in out["guestSshConfig"] and "User alice" in out["guestSshConfig"]

    return after_deploy(run, check)


@pulumi.runtime.test
def test_ipv6_only(keys):
    """Nobody may reach an IPv4 address: the relay gets none, and is known by its IPv6 address."""
    run = run_program({**example_config(keys), "pairing:allowedCidrs": ["2001:db8:1::/48", "2001:db8:2::/48"]})

    def check(out):
        check_network(run)
        ingress = run.inputs("aws:ec2/securityGroup:SecurityGroup")["ingress"]
        assert [(r.get("cidrBlocks"), r.get("ipv6CidrBlocks")) for r in ingress] == [(None, ["2001:db8:1::/48", "2001:db8:2::/48"])]
        instance = run.inputs("aws:ec2/instance:Instance")
        # Set on the launch, so it wins over the subnet's map_public_ip_on_launch.
        assert instance["associatePublicIpAddress"] is False
        parsed = StackOutputs.from_json(out)
        assert parsed.relay_address == RELAY_IPV6 == parsed.relay_ipv6_address
        assert out["relayKnownHosts"].startswith(f"{RELAY_IPV6} ")
        assert f"HostName {RELAY_IPV6}" in out["guestSshConfig"]
        assert out["guestSshConfig"] == ssh_config(parsed.guest_route)

    return after_deploy(run, check)


@pulumi.runtime.test
def test_ecdsa_host_key_deploys(keys, tmp_path):
    """EC2 key pairs take RSA and ED25519 only; pairing makes none, so every accepted key type deploys."""
    host = make_key(tmp_path, "host-ecdsa", "ecdsa")
    run = run_program({**example_config(keys), "pairing:hostPublicKey": host.public_line})

    def check(out):
        check_network(run)
        tunnel = next(u for u in yaml.safe_load(revealed(run.inputs("aws:ec2/instance:Instance")["userData"]))["users"]
                      if u["name"] == "tunnel")
        assert tunnel["ssh_authorized_keys"][0].endswith(host.public_line)
        assert StackOutputs.from_json(out).host_public_key.bare == " ".join(host.public_line.split()[:2])

    return after_deploy(run, check)


@pulumi.runtime.test
def test_relay_image_pins_the_ami(keys):
    """pairing:relayImage boots that AMI: no lookup, and a changed one is applied (no ignore_changes)."""
    run = run_program({**example_config(keys), "pairing:relayImage": "ami-0123456789abcdef0"})

    def check(out):
        assert run.inputs("aws:ec2/instance:Instance")["ami"] == "ami-0123456789abcdef0"
        assert not [c for c in run.mocks.calls if c.token == "aws:ec2/getAmi:getAmi"]
        assert list(run.options("aws:ec2/instance:Instance").ignoreChanges) == []

    return after_deploy(run, check)


@pulumi.runtime.test
def test_zone_offers_the_instance_type(keys):
    """The subnet goes where the type is offered, never into a Local Zone."""
    run = run_program({**example_config(keys), "pairing:instanceType": "t4g.micro"},
                      Recorder(offered_in=(LOCAL_ZONE, "eu-central-1c", "eu-central-1b")))

    def check(out):
        check_network(run, zone="eu-central-1b")

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


def refused(config: dict, mocks: Recorder | None = None) -> str:
    """The one-line error `pulumi up` shows, once the program ended with nothing registered."""
    mocks = mocks or Recorder()
    caught = []

    @pulumi.runtime.test  # waits for any registration the program started
    def program():
        with pytest.raises(pulumi.RunError) as error:
            run_program(config, mocks)
        caught.append(str(error.value))

    program()
    assert mocks.resources == {} and mocks.requests == {}
    assert caught and "\n" not in caught[0]
    return caught[0]


def rsa_4096_lines(count: int) -> list[str]:
    """RSA-4096 public key lines of the size ssh-keygen makes. Public halves only: a
    random odd modulus parses like a real key, without the cost of making 24 of them."""
    return [
        rsa.RSAPublicNumbers(65537, secrets.randbits(4096) | 1 << 4095 | 1).public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + f" guest{i}@laptop"
        for i in range(count)
    ]


def test_bad_config_registers_nothing(keys):
    mocks = Recorder()
    assert refused({**example_config(keys), "pairing:tunnelPort": "70000"}, mocks).startswith(
        "pairing:tunnelPort: 70000 is out of range")
    assert mocks.calls == []


def instance_inputs(config: dict[str, object], host_key: dict) -> dict:
    """The instance's inputs as `pulumi up` would send them for this config (the relay's host key given, as the
    stack's state keeps it from one update to the next)."""
    seen: dict = {}

    @pulumi.runtime.test
    def deploy():
        run = run_program(config, Recorder(host_key=host_key))
        return after_deploy(run, lambda _: seen.update(run.inputs("aws:ec2/instance:Instance")))

    deploy()
    return seen


def test_a_guest_only_change_leaves_the_instance_as_it_was(keys):
    """Guests added, removed, made viewers, 24 RSA-4096 keys of them: the instance's inputs, user data included,
    are byte for byte the same, so `pulumi up` has nothing to replace (user_data_replace_on_change stays on for
    what does belong to the relay). The guests are let on by the host at run time (pairing-guests)."""
    host_key = tls_state(ed25519.Ed25519PrivateKey.generate())
    before = instance_inputs(example_config(keys), host_key)
    after = instance_inputs({**example_config(keys), "pairing:guestKeys": rsa_4096_lines(24),
                             "pairing:viewerKeys": [keys["guest"].public_line, keys["viewer"].public_line]}, host_key)
    assert revealed(after["userData"]).encode() == revealed(before["userData"]).encode()
    assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)
    assert keys["guest"].public_line.split()[1] not in revealed(after["userData"])
    # A relay setting does change it (so the comparison can fail): another tunnel port.
    port = instance_inputs({**example_config(keys), "pairing:tunnelPort": "2222"}, host_key)
    assert revealed(port["userData"]) != revealed(before["userData"])


@pytest.mark.parametrize("version, cidr", [(4, "198.51.{}.0/24"), (6, "2001:db8:{}::/48")])
def test_more_rules_than_a_security_group_takes(keys, version, cidr):
    cidrs = [cidr.format(i) for i in range(61)]
    assert refused({**example_config(keys), "pairing:allowedCidrs": cidrs}) == (
        f"pairing:allowedCidrs: 61 IPv{version} CIDRs, over the 60 inbound rules per address family a security "
        "group takes (EC2's default quota); merge them into fewer, wider CIDRs")


def test_sixty_per_family_deploy(keys):
    """60 of each family is the quota, not over it."""
    cidrs = [f"198.51.{i}.0/24" for i in range(60)] + [f"2001:db8:{i}::/48" for i in range(60)]
    from pairing.settings import settings_from
    assert len(settings_from({"guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
                              "hostSshdKey": keys["sshd"].public_line, "allowedCidrs": cidrs}).allowed_cidrs) == 120


def test_instance_size_that_does_not_exist(keys):
    assert refused({**example_config(keys), "pairing:instanceType": "m5.nano"}).startswith(
        "pairing:instanceType: m5.nano does not exist; m5 comes in large, xlarge, 2xlarge")


def test_instance_type_offered_nowhere_in_the_region(keys):
    message = refused({**example_config(keys), "pairing:instanceType": "c8g.medium"}, Recorder(offered_in=(LOCAL_ZONE,)))
    assert message == ("pairing:instanceType: c8g.medium is offered in no availability zone of eu-central-1; "
                       "pick another type (e.g. t3.micro, or t4g.micro) or another aws:region")


@pytest.mark.parametrize("partition, region", [("aws-us-gov", "us-gov-west-1"), ("aws-cn", "cn-north-1")])
def test_partition_without_debian_images(keys, partition, region):
    message = refused(example_config(keys), Recorder(partition=partition, region=region))
    assert message == (f"aws:region: {region} is in the {partition} partition, where Debian publishes no images "
                       "(its account 136693071363 is in the aws partition); use a commercial region, "
                       "or set pairing:relayImage to a Debian 13 AMI id you have there")


@pulumi.runtime.test
def test_partition_with_own_image_deploys(keys):
    mocks = Recorder(partition="aws-us-gov", region="us-gov-west-1")
    run = run_program({**example_config(keys), "pairing:relayImage": "ami-0123456789abcdef0"}, mocks)

    def check(out):
        assert run.inputs("aws:ec2/instance:Instance")["ami"] == "ami-0123456789abcdef0"

    return after_deploy(run, check)


def test_guest_ssh_config_is_valid_for_openssh(keys, tmp_path):
    """The real ssh parses the generated config and resolves the route from it."""
    from pairing.guest_documents import GuestRoute, ssh_config
    from pairing.sshkeys import parse_public_key

    route = GuestRoute(PUBLIC_IP, 22, parse_public_key(keys["sshd"].public_line), 1337, "alice", parse_public_key(keys["host"].public_line))
    path = tmp_path / "pairing.conf"
    path.write_text(ssh_config(route))
    result = subprocess.run(["ssh", "-G", "-F", str(path), "pairing"], capture_output=True, text=True, check=True,
                            env={**os.environ, "HOME": str(tmp_path)})  # the config includes ~/.ssh/config
    seen = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert seen["hostname"] == "localhost" and seen["port"] == "1337" and seen["user"] == "alice"
    assert seen["proxyjump"] == "pairing-relay"
    assert seen["stricthostkeychecking"] == "true"
    assert seen["hostkeyalias"] == "pairing-host"


@pulumi.runtime.test
def test_the_sshd_key_defaults_to_pairings_own(keys, tmp_path, monkeypatch):
    """No pairing:hostSshdKey: guests pin the key of `pairing host`'s own sshd (made once, under the data folder)."""
    from pairing.hook.sshd import host_key

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    config = {key: value for key, value in example_config(keys).items() if key != "pairing:hostSshdKey"}
    run = run_program(config)

    def check(out):
        assert StackOutputs.from_json(out).host_sshd_key == host_key(tmp_path / "pairing")
        assert out["hostSshdKey"] == host_key(tmp_path / "pairing").bare

    return after_deploy(run, check)


@pulumi.runtime.test
def test_named_keys_reach_the_outputs(keys, tmp_path):
    """The names `pairing up` gives (its flags, through up_plan) come out of the program in guestKeys and
    viewerKeys, as the keys' comments, so `pairing host --outputs FILE` names each guest (pairing.names.roster)."""
    from pairing.cli import parser
    from pairing.names import roster
    from pairing.up_plan import plan

    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text(keys["host"].public_line + "\n")
    argv = ["up", "--guest", f"alice={keys['guest'].public_line}", "--guest", keys["guest2"].public_line,
            "--viewer", f"bob={keys['viewer'].public_line}", "--region", "eu-central-1", "--sshd-key", keys["sshd"].public_line]
    up_plan = plan(parser().parse_args(argv), home=tmp_path, environ={})
    run = run_program({**example_config(keys), **up_plan.config})

    def check(out):
        bare = {name: " ".join(keys[name].public_line.split()[:2]) for name in ("guest", "guest2", "viewer")}
        assert out["guestKeys"] == [f"{bare['guest']} alice", f"{bare['guest2']} guest2"]
        assert out["viewerKeys"] == [f"{bare['viewer']} bob"]
        parsed = StackOutputs.from_json(json.loads(json.dumps(out)))  # as `pulumi stack output --json` writes it
        assert [(g.name, g.typing) for g in roster(parsed.guest_keys, parsed.viewer_keys)] == [
            ("alice", True), ("guest2", True), ("bob", False)]

    return after_deploy(run, check)
