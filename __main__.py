"""pairing: a disposable SSH relay on AWS for pairing in the host's tmux.

Config (pairing:*) is read and checked first, then the region (partition, zones offering
the instance type); nothing is created on a bad value or an impossible deploy.
See README.md for the settings and Pulumi.dev.yaml for an example stack.
"""

import pulumi

from pairing.program import availability_zone, load_settings
from pairing.relay import PairingRelay

settings = load_settings()

relay = PairingRelay("relay", settings, availability_zone(settings))

for name, value in relay.outputs.items():
    pulumi.export(name, value)
