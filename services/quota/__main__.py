from services.common.server import HealthOnlyApp, run

# Health and reflection only until stratus.quota.v1 lands (issue 5).
run(HealthOnlyApp("quota"))
