from services.placement.app import PlacementApp
from services.common.server import run

run(PlacementApp())
