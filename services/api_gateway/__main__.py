from services.api_gateway.app import ApiGatewayApp
from services.common.server import run

run(ApiGatewayApp())
