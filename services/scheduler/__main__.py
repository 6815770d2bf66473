from services.common.server import run
from services.scheduler.app import SchedulerApp

run(SchedulerApp())
