"""PairingRelay: the disposable relay as one Pulumi ComponentResource.

Settings in, AWS resources and the stack outputs out. All documents come
from the pure functions in relay_documents and guest_documents.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from . import relay_documents
from .outputs import OUTPUT_NAMES, RELAY_SSH_PORT, render_outputs
from .settings import Settings
from .sshkeys import parse_public_key

SSH_PORT = RELAY_SSH_PORT
UBUNTU_OWNER = "099720109477"  # Canonical
UBUNTU_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"
AMI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
ROOT_VOLUME_GB = 8


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
        rendered = pulumi.Output.all(
            self.instance.public_ip, self.host_key.public_key_openssh, self.instance.id, launch_time
        ).apply(
            lambda facts: render_outputs(
                settings,
                relay_address=facts[0],
                relay_host_key=parse_public_key(facts[1]),
                instance_id=facts[2],
                launch_time=facts[3],
            )
        )
        self.outputs: dict[str, pulumi.Output] = {
            name: rendered.apply(lambda values, name=name: values[name]) for name in OUTPUT_NAMES
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
