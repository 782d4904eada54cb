"""The Pulumi program as an installed copy runs it (pairing/project.py): the same as the clone's
__main__.py. Config (pairing:*) in, one PairingRelay, outputs out: pairing/program.py."""

from pairing.program import declare

relay = declare()
