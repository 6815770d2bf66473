"""Room left after the instances this same request placed already.

Placement answered what fitted before the request began; a multi-create
fills hosts as it goes, so the later instances must see what is left.
"""

from services.scheduler.host_state import HostState
from services.scheduler.request import Placing

name = "resources-fit"
reason = "host(s) filled by earlier instances of this request"


def passes(host: HostState, placing: Placing) -> bool:
    return all(host.free_now(rc) >= n for rc, n in placing.request.resources.items())
