"""Only hosts of the requested availability zone.

A zone is a label each host agent declares (`hostagent.availability_zone`,
"default" unless set) and publishes with its liveness key, so the scheduler
knows every live host's zone without asking anyone.
"""

from services.scheduler.host_state import HostState
from services.scheduler.request import Placing

name = "availability-zone"
reason = "host(s) in another availability zone"


def passes(host: HostState, placing: Placing) -> bool:
    wanted = placing.request.availability_zone
    return not wanted or host.availability_zone == wanted
