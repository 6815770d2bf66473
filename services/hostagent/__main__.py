from services.common.server import run
from services.hostagent.app import HostAgentApp

run(HostAgentApp())
