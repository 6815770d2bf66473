from services.quota.app import QuotaApp
from services.common.server import run

run(QuotaApp())
