"""python -m services.hostagent.fleet --first 0 --count 2500 [--name-prefix sim-]

Runs simulated hosts <prefix><first> .. <prefix><first+count-1> in this
process; everything else comes from the STRATUS_* settings of a host agent.
deploy/local/fleet.py starts several of these and is the usual way in.
"""

import argparse

from services.common.server import run
from services.hostagent.fleet.app import FleetApp
from services.hostagent.fleet.hosts import host_names

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--first", type=int, default=0, help="index of this process's first host")
parser.add_argument("--count", type=int, required=True, help="hosts in this process")
parser.add_argument("--name-prefix", default="sim-", help="host names are <prefix><index>")
args = parser.parse_args()
run(FleetApp(host_names(args.name_prefix, args.first, args.count)))
