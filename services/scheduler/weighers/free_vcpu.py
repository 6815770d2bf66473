"""More free VCPUs weigh more (spread); a negative multiplier packs."""

from services.common.config import SchedulerSection
from services.scheduler.host_state import HostState
from services.scheduler.request import Placing

name = "free-vcpu"


def multiplier(config: SchedulerSection) -> float:
    return config.vcpu_weight_multiplier


def raw(host: HostState, placing: Placing) -> float:
    return host.free_now("VCPU")
