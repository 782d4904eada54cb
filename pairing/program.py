"""Glue between the Pulumi runtime and the pure settings code, and the program itself (declare)."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
from pulumi.runtime.config import CONFIG

from . import relay_documents
from .relay import PairingRelay
from .settings import NAMESPACE, ConfigError, Settings, settings_from


def stack_config() -> dict[str, str]:
    """Every `pairing:` key set for this stack, unknown ones included, so a typo is reported."""
    prefix = NAMESPACE + ":"
    return {key[len(prefix):]: value for key, value in CONFIG.get().items() if key.startswith(prefix)}


def load_settings() -> Settings:
    """Validated settings, or a one-line error (no traceback) before any resource exists."""
    try:
        settings = settings_from(stack_config())
        relay_documents.check_user_data_size(settings)
        return settings
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None


# Debian publishes its images from this account in the commercial partition only;
# GovCloud and China are separate partitions with accounts of their own.
IMAGES_PARTITION = "aws"


def availability_zone(settings: Settings) -> str:
    """Where the relay can run, or a one-line error: both asked of AWS before any resource exists.

    EC2 would pick a subnet's zone without regard to the instance type (t4g, say, is not
    offered in every zone), and the instance must then run in the subnet's zone. So the
    zone is chosen here: the first, by name, of the region's own zones (Local Zones,
    opted into, cost more and lack features) that offer the type. By name, so that the
    same region and type give the same zone on every `pulumi up` (a new zone would
    replace the subnet and the relay).
    """
    region = aws.get_region().region
    try:
        partition = aws.get_partition().partition
        if partition != IMAGES_PARTITION and settings.relay_image is None:
            raise ConfigError(
                f"aws:region: {region} is in the {partition} partition, where Debian publishes no images "
                "(its account 136693071363 is in the aws partition); use a commercial region, "
                "or set pairing:relayImage to a Debian 13 AMI id you have there"
            )
        zones = aws.get_availability_zones(
            state="available", filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])]
        ).names
        offered = aws.ec2.get_instance_type_offerings(
            location_type="availability-zone",
            filters=[aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="instance-type", values=[settings.instance_type])],
        ).locations
        usable = sorted(set(zones) & set(offered))
        if not usable:
            raise ConfigError(
                f"pairing:instanceType: {settings.instance_type} is offered in no availability zone of {region}; "
                "pick another type (e.g. t3.micro, or t4g.micro) or another aws:region"
            )
        return usable[0]
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None


def declare() -> PairingRelay:
    """The whole Pulumi program: config in, one PairingRelay, outputs out. Run by the clone's
    __main__.py (`pulumi up` there) and by the packaged one (pairing/pulumi_project/)."""
    settings = load_settings()
    relay = PairingRelay("relay", settings, availability_zone(settings))
    for name, value in relay.outputs.items():
        pulumi.export(name, value)
    return relay
