from services.hostagent.app import HostAgentApp
from services.common.server import run

run(HostAgentApp())
