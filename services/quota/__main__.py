from services.common.server import run
from services.quota.app import QuotaApp

run(QuotaApp())
