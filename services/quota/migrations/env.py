from services.common.migrations_env import run_migrations
from services.quota.models import Base

run_migrations(Base.metadata)
