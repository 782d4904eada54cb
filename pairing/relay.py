"""PairingRelay: the disposable relay as one Pulumi ComponentResource.

Settings in, AWS resources and the stack outputs out. All documents come
from the pure functions in relay_documents and guest_documents.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from . import relay_documents
from .outputs import OUTPUT_NAMES, RELAY_SSH_PORT, render_outputs
from .settings import Settings
from .sshkeys import parse_public_key

SSH_PORT = RELAY_SSH_PORT
# Debian 13 (trixie), from Debian's own account; the relay documents are tested on trixie.
DEBIAN_OWNER = "136693071363"
DEBIAN_NAME = "debian-13-{arch}-*"  # not debian-13-backports-*
AMI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
ROOT_VOLUME_GB = 8
# The relay's own network: nothing else lives in it, so any private range will do.
VPC_CIDR, SUBNET_CIDR = "10.0.0.0/16", "10.0.0.0/24"


@dataclass
class Network:
    vpc: aws.ec2.Vpc
    subnet: aws.ec2.Subnet
    route_table_association: aws.ec2.RouteTableAssociation


def _network(name: str, availability_zone: str, tags: dict, opts: pulumi.ResourceOptions) -> Network:
    """A dual-stack VPC with one public subnet, made every time.

    Not the default VPC: an account may have none (or a changed one), and it has no IPv6.
    All of it is free; only the instance and its public IPv4 address cost money.
    """
    vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=VPC_CIDR, assign_generated_ipv6_cidr_block=True, tags=tags, opts=opts)
    gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=opts)
    subnet = aws.ec2.Subnet(
        f"{name}-public",
        vpc_id=vpc.id,
        availability_zone=availability_zone,
        cidr_block=SUBNET_CIDR,
        map_public_ip_on_launch=True,
        # The first /64 of the VPC's Amazon-provided /56 (a subnet's IPv6 block must be a /64).
        ipv6_cidr_block=vpc.ipv6_cidr_block.apply(lambda block: str(next(ipaddress.ip_network(block).subnets(new_prefix=64)))),
        assign_ipv6_address_on_creation=True,
        tags=tags,
        opts=opts,
    )
    routes = aws.ec2.RouteTable(
        f"{name}-routes",
        vpc_id=vpc.id,
        routes=[
            aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id),
            aws.ec2.RouteTableRouteArgs(ipv6_cidr_block="::/0", gateway_id=gateway.id),
        ],
        tags=tags,
        opts=opts,
    )
    association = aws.ec2.RouteTableAssociation(f"{name}-public", subnet_id=subnet.id, route_table_id=routes.id, opts=opts)
    return Network(vpc, subnet, association)


def _debian_image(settings: Settings, opts: pulumi.InvokeOptions) -> pulumi.Input[str]:
    """pairing:relayImage if set, else the newest Debian 13 for the type's architecture."""
    if settings.relay_image is not None:
        return settings.relay_image
    arch = settings.architecture
    return aws.ec2.get_ami_output(
        most_recent=True,
        owners=[DEBIAN_OWNER],
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[DEBIAN_NAME.format(arch=AMI_ARCH[arch])]),
            aws.ec2.GetAmiFilterArgs(name="architecture", values=[arch]),
            aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
        ],
        opts=opts,
    ).id


class PairingRelay(pulumi.ComponentResource):
    """Its own network, a security group, a pinned host key and a self-ending instance."""

    def __init__(self, name: str, settings: Settings, availability_zone: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pairing:index:PairingRelay", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = pulumi.get_stack()
        tags = {"Name": f"pairing-{stack}", "pairing:stack": stack, "pairing:project": pulumi.get_project()}

        self.network = _network(name, availability_zone, tags, child)

        # Made before boot and kept secret in state, so clients pin it instead of trusting on first use.
        self.host_key = tls.PrivateKey(f"{name}-host-key", algorithm="ED25519", opts=child)

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-ssh",
            description="pairing relay: ssh from the allowed CIDRs only",
            vpc_id=self.network.vpc.id,
            ingress=_ssh_ingress(settings),
            # No egress: the relay only answers inbound ssh (security groups are
            # stateful) and forwards on its own loopback; nothing it runs needs
            # to reach out, and a compromised relay cannot either.
            egress=[],
            tags=tags,
            opts=child,
        )
        # No EC2 key pair: every account on the relay is declared in the user data
        # (allow_public_ssh_keys: false), and ImportKeyPair takes RSA and ED25519 only.

        user_data = pulumi.Output.all(self.host_key.private_key_openssh, self.host_key.public_key_openssh).apply(
            lambda keys: relay_documents.user_data(settings, relay_documents.RelayHostKey(*keys))
        )
        burstable = settings.instance_type.startswith("t")
        # No public IPv4 address (the one part of the network that bills) when nobody may use it.
        has_ipv4 = any(n.version == 4 for n in settings.allowed_cidrs)
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=_debian_image(settings, pulumi.InvokeOptions(parent=self)),
            instance_type=settings.instance_type,
            subnet_id=self.network.subnet.id,
            vpc_security_group_ids=[self.security_group.id],
            associate_public_ip_address=has_ipv4,
            ipv6_address_count=1,
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
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                # A changed ami replaces the relay: keep the image the first deploy found
                # (the lookup finds a newer one every few weeks), unless relayImage names one.
                ignore_changes=["ami"] if settings.relay_image is None else None,
                # No depends_on the routes: the launch (most of a cold deploy, bench/README.md) overlaps the
                # gateway, route table and association; the outputs wait for them instead (below), so nobody
                # is given the relay's address before its routes exist. Its boot needs none (no packages,
                # cloud-config.yaml), nor does its TTL (the clock, and IMDS on the link).
            )),
        )

        launch_time = aws.ec2.get_instance_output(
            instance_id=self.instance.id, opts=pulumi.InvokeOptions(parent=self)
        ).launch_time
        rendered = pulumi.Output.all(
            self.instance.public_ip, self.instance.ipv6_addresses, self.host_key.public_key_openssh, self.instance.id,
            launch_time,
            # Handed out only once the relay's routes exist: the launch did not wait for them, its address does.
            self.network.route_table_association.id,
        ).apply(
            lambda facts: render_outputs(
                settings,
                # With IPv6-only allowedCidrs the IPv6 address is the only one anybody may reach
                # (the host's tunnel included), and there is no public IPv4 address.
                relay_address=facts[0] if has_ipv4 else facts[1][0],
                relay_ipv6_address=facts[1][0],
                relay_host_key=parse_public_key(facts[2]),
                instance_id=facts[3],
                launch_time=facts[4],
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
