from services.scheduler.app import SchedulerApp
from services.common.server import run

run(SchedulerApp())
