"""The redfish driver: bare-metal machines as servers, through their BMCs (see driver.py)."""

from services.hostagent.drivers.redfish.driver import RedfishDriver
from services.hostagent.drivers.redfish.machines import load_enrolment

__all__ = ["RedfishDriver", "load_enrolment"]
