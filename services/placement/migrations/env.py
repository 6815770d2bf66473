from services.common.migrations_env import run_migrations
from services.placement.models import Base

run_migrations(Base.metadata)
