from services.common.server import run
from services.placement.app import PlacementApp

run(PlacementApp())
