from services.common.server import HealthOnlyApp, run

# Health and reflection only until stratus.hostagent.v1 lands (issue 4).
run(HealthOnlyApp("hostagent"))
