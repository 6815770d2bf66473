-- First filter of the chain. On the way in it removes the identity headers
-- a client may have sent, before jwt_authn sets them from a verified token
-- (so a token without a claim cannot be topped up with a forged header).
-- Its response hook sees every answer: the services', jwt_authn's, the
-- transcoder's, the body guard's and the router's own.
-- It makes every error one JSON shape:
--   {"error": {"code", "status", "reason", "message", "request_id"}}
-- A failed gRPC call brings its body in the x-fault-body metadata (a header
-- for a trailers-only answer, an HTTP/2 trailer otherwise); the body guard's
-- answers are final already (x-stratus-fault); anything else (the
-- transcoder's "Could not resolve ...", the router's "no healthy upstream")
-- is text, wrapped here. No gRPC plumbing header reaches a REST client.
local STRIP = {"grpc-status", "grpc-message", "grpc-status-details-bin",
               "grpc-accept-encoding", "x-fault-body", "x-stratus-fault",
               "x-envoy-upstream-service-time"}
-- Only the edge may set these (services/common/context.py; cli/tokens.py
-- CLAIM_HEADERS maps token claims onto them).
local IDENTITY = {"x-stratus-project", "x-stratus-user", "x-stratus-roles"}
local STATUS = {[400] = "INVALID_ARGUMENT", [401] = "UNAUTHENTICATED", [403] = "PERMISSION_DENIED",
                [404] = "NOT_FOUND", [409] = "ABORTED", [413] = "INVALID_ARGUMENT",
                [429] = "RESOURCE_EXHAUSTED", [499] = "CANCELLED", [500] = "INTERNAL",
                [501] = "UNIMPLEMENTED", [503] = "UNAVAILABLE", [504] = "DEADLINE_EXCEEDED"}
local REASON = {[400] = "stratus.invalid_request", [401] = "stratus.unauthenticated",
                [404] = "stratus.unknown_route",
                [413] = "stratus.body_too_large", [501] = "stratus.not_implemented",
                [503] = "stratus.upstream_unavailable", [504] = "stratus.upstream_timeout"}
-- What to do next, before the edge's own terse text ("Jwt is expired").
local HINT = {[401] = "a valid bearer token is required (Authorization: Bearer <token>; "
                      .. "`stratus-manage token create` makes one): "}

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function error_body(status, message, request_id)
  return string.format('{"error":{"code":%d,"status":%s,"reason":%s,"message":%s,"request_id":%s}}',
    status, json_string(STATUS[status] or "UNKNOWN"), json_string(REASON[status] or "stratus.edge_error"),
    json_string(message), json_string(request_id))
end

function envoy_on_request(handle)
  local headers = handle:headers()
  for _, key in ipairs(IDENTITY) do headers:remove(key) end
  local meta = handle:streamInfo():dynamicMetadata()
  meta:set("stratus", "request_id", headers:get("x-request-id") or "")
  local content_type = headers:get("content-type") or ""
  meta:set("stratus", "grpc", content_type:sub(1, 16) == "application/grpc")
end

function envoy_on_response(handle)
  -- Native gRPC clients get gRPC answers untouched: their status lives in
  -- the grpc-* headers this filter strips for REST clients.
  local meta = handle:streamInfo():dynamicMetadata():get("stratus") or {}
  if meta["grpc"] then return end
  local headers = handle:headers()
  local status = tonumber(headers:get(":status")) or 0
  local fault = headers:get("x-fault-body")
  local final = headers:get("x-stratus-fault") ~= nil
  if status >= 400 and fault == nil and not final then
    local grpc_message = headers:get("grpc-message")
    local body = handle:body(true)  -- trailers are known only once the whole body is in
    local trailers = handle:trailers()
    if trailers ~= nil then
      fault = trailers:get("x-fault-body")
      grpc_message = grpc_message or trailers:get("grpc-message")
    end
    if fault == nil then
      local text = grpc_message
      if text ~= nil then
        text = text:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      elseif body ~= nil then
        text = body:getBytes(0, body:length())
      end
      fault = error_body(status, (HINT[status] or "") .. (text or ""), meta["request_id"] or "")
    end
  end
  headers = handle:headers()  -- re-fetch: handles die after body()/trailers()
  for _, key in ipairs(STRIP) do headers:remove(key) end
  if fault ~= nil then
    handle:body(true):setBytes(fault)
    handle:headers():replace("content-type", "application/json")
  end
end
