"""pairing: a disposable SSH relay on AWS for pairing in the host's tmux (`pulumi up` in this clone).

Config (pairing:*) is read and checked first, then the region (partition, zones offering
the instance type); nothing is created on a bad value or an impossible deploy.
The program itself is pairing/program.py's declare(), which an installed copy runs too
(pairing/pulumi_project/). Settings: docs/relay.md; an example stack: Pulumi.dev.yaml.
"""

from pairing.program import declare

relay = declare()
