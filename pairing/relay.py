"""PairingRelay: the disposable relay as one Pulumi ComponentResource.

Settings in, AWS resources and the stack outputs out. All documents come
from the pure functions in relay_documents and guest_documents.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from . import guest_documents, relay_documents
from .settings import Settings
from .sshkeys import parse_public_key

SSH_PORT = 22
UBUNTU_OWNER = "099720109477"  # Canonical
UBUNTU_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"
AMI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
ROOT_VOLUME_GB = 8


def expires_at(launch_time: str, ttl_minutes: int) -> str:
    """When the relay ends itself: its launch plus the TTL, ISO 8601 UTC.

    The relay counts from its first boot, a few seconds after launch, so this
    is on the safe side by those seconds.
    """
    launched = datetime.fromisoformat(launch_time.replace("Z", "+00:00")).astimezone(timezone.utc)
    return (launched + timedelta(minutes=ttl_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


class PairingRelay(pulumi.ComponentResource):
    """A security group, a key pair, a pinned host key and a self-ending instance."""

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pairing:index:PairingRelay", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = pulumi.get_stack()
        tags = {"Name": f"pairing-{stack}", "pairing:stack": stack, "pairing:project": pulumi.get_project()}

        # Made before boot and kept secret in state, so clients pin it instead of trusting on first use.
        self.host_key = tls.PrivateKey(f"{name}-host-key", algorithm="ED25519", opts=child)

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-ssh",
            description="pairing relay: ssh from the allowed CIDRs only",
            ingress=_ssh_ingress(settings),
            # No egress: the relay only answers inbound ssh (security groups are
            # stateful) and forwards on its own loopback; nothing it runs needs
            # to reach out, and a compromised relay cannot either.
            egress=[],
            tags=tags,
            opts=child,
        )
        self.key_pair = aws.ec2.KeyPair(f"{name}-host", public_key=settings.host_public_key.line, tags=tags, opts=child)

        arch = settings.architecture
        ami = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[UBUNTU_OWNER],
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=[UBUNTU_NAME.format(arch=AMI_ARCH[arch])]),
                aws.ec2.GetAmiFilterArgs(name="architecture", values=[arch]),
                aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            ],
            opts=pulumi.InvokeOptions(parent=self),
        )
        user_data = pulumi.Output.all(self.host_key.private_key_openssh, self.host_key.public_key_openssh).apply(
            lambda keys: relay_documents.user_data(settings, relay_documents.RelayHostKey(*keys))
        )
        burstable = settings.instance_type.startswith("t")
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami.id,
            instance_type=settings.instance_type,
            key_name=self.key_pair.key_name,
            vpc_security_group_ids=[self.security_group.id],
            associate_public_ip_address=True,
            # It carries the relay's private host key.
            user_data=pulumi.Output.secret(user_data),
            user_data_replace_on_change=True,
            # The TTL powers the relay off; EC2 then terminates it, so nothing keeps billing.
            instance_initiated_shutdown_behavior="terminate",
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                encrypted=True, volume_type="gp3", volume_size=ROOT_VOLUME_GB, delete_on_termination=True
            ),
            # An idle relay should never buy surplus CPU credits.
            credit_specification=aws.ec2.InstanceCreditSpecificationArgs(cpu_credits="standard") if burstable else None,
            tags=tags,
            volume_tags=tags,
            opts=child,
        )

        launch_time = aws.ec2.get_instance_output(
            instance_id=self.instance.id, opts=pulumi.InvokeOptions(parent=self)
        ).launch_time
        relay_key = self.host_key.public_key_openssh.apply(parse_public_key)
        route = pulumi.Output.all(self.instance.public_ip, relay_key).apply(
            lambda args: guest_documents.GuestRoute(
                relay_address=args[0],
                relay_port=SSH_PORT,
                relay_host_key=args[1],
                tunnel_port=settings.tunnel_port,
                host_user=settings.host_user,
                host_sshd_key=settings.host_sshd_key,
            )
        )
        self.outputs: dict[str, pulumi.Input] = {
            "relayAddress": self.instance.public_ip,
            "relayPort": SSH_PORT,
            "tunnelPort": settings.tunnel_port,
            "relayKnownHosts": route.apply(
                lambda r: guest_documents.relay_known_hosts(r.relay_address, r.relay_port, r.relay_host_key)
            ),
            "relayHostKeyFingerprint": self.host_key.public_key_fingerprint_sha256,
            "guestSshConfig": route.apply(guest_documents.ssh_config),
            "guestCommand": route.apply(guest_documents.command),
            "hostUser": settings.host_user,
            "tmuxSession": settings.tmux_session,
            "hostSshdKey": settings.host_sshd_key.bare,
            "expiresAt": launch_time.apply(lambda t: expires_at(t, settings.ttl_minutes)),
            "instanceId": self.instance.id,
        }
        self.register_outputs(self.outputs)


def _ssh_ingress(settings: Settings) -> list[aws.ec2.SecurityGroupIngressArgs]:
    """Port 22 from the allowed CIDRs, IPv6 ones as IPv6 rules."""
    v4 = [str(n) for n in settings.allowed_cidrs if n.version == 4]
    v6 = [str(n) for n in settings.allowed_cidrs if n.version == 6]
    rule = dict(protocol="tcp", from_port=SSH_PORT, to_port=SSH_PORT, description="ssh to the pairing relay")
    rules = []
    if v4:
        rules.append(aws.ec2.SecurityGroupIngressArgs(cidr_blocks=v4, **rule))
    if v6:
        rules.append(aws.ec2.SecurityGroupIngressArgs(ipv6_cidr_blocks=v6, **rule))
    return rules
