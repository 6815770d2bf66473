"""More free memory weighs more (spread); a negative multiplier packs."""

from services.common.config import SchedulerSection
from services.scheduler.host_state import HostState
from services.scheduler.request import Placing

name = "free-ram"


def multiplier(config: SchedulerSection) -> float:
    return config.ram_weight_multiplier


def raw(host: HostState, placing: Placing) -> float:
    return host.free_now("MEMORY_MB")
