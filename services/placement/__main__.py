from services.common.server import HealthOnlyApp, run

# Health and reflection only until stratus.placement.v1 lands (issue 3).
run(HealthOnlyApp("placement"))
