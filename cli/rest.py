"""The `stratus` CLI's side of the REST edge: requests, pages, and the errors it reports.

Every failure the CLI reports is a CliError: click prints it as `error: ...` on
stderr and exits 1. An error the API answered keeps its JSON (code, status,
reason, message, request_id, field_violations) as an ApiError.
"""

from __future__ import annotations

from typing import Any

import click
import httpx

# Lists are read in pages this large (the API's maximum), so following
# next_page_token costs as few round trips as it can.
PAGE_SIZE = 1000


class CliError(click.ClickException):
    """A failure to report as `error: <message>` on stderr, with exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


class ApiError(CliError):
    """The API refused: the error document of the README's shape, field by field."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str = "",
        status: str = "",
        request_id: str = "",
        field_violations: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.status = status
        self.request_id = request_id
        self.field_violations = field_violations or []

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            error = response.json()["error"]
            return cls(
                code=int(error.get("code") or response.status_code),
                message=error.get("message") or response.reason_phrase,
                reason=error.get("reason", ""),
                status=error.get("status", ""),
                request_id=error.get("request_id", ""),
                field_violations=error.get("field_violations"),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            # Not the edge's error shape (a proxy in between, say): show what came back.
            text = response.text.strip()[:300] or response.reason_phrase
            return cls(code=response.status_code, message=text)

    def format_message(self) -> str:
        where = f"{self.reason}, HTTP {self.code}" if self.reason else f"HTTP {self.code}"
        lines = [f"{self.message} ({where})"]
        for violation in self.field_violations:
            line = f"{violation.get('field', '')}: {violation.get('description', '')}"
            if line not in self.message:  # one violation is usually the message itself
                lines.append(f"  {line}")
        return "\n".join(lines)


class Api:
    """The compute API through the REST edge, answering decoded JSON documents."""

    def __init__(
        self,
        url: str,
        token: str = "",
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"user-agent": "stratus-cli"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            self._http = httpx.Client(
                base_url=self.url, headers=headers, transport=transport, timeout=timeout_s
            )
        except httpx.InvalidURL as exc:
            raise CliError(f"{url!r} is not a URL ({exc}); set --url or STRATUS_URL") from None
        self._timeout_s = timeout_s

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: dict, params: dict[str, Any] | None = None) -> dict:
        return self.request("PATCH", path, params=params, body=body)

    def delete(self, path: str) -> dict:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: dict | None = None,
    ) -> dict:
        try:
            response = self._http.request(method, path, params=params, json=body)
        except httpx.ConnectError as exc:
            raise CliError(
                f"cannot connect to Stratus at {self.url}: {exc} "
                "(is the mesh running? set --url or STRATUS_URL)"
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"no answer from {self.url} within {self._timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise CliError(f"talking to {self.url} failed: {exc}") from None
        if not response.is_success:
            raise ApiError.from_response(response)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{method} {path} answered {response.status_code} without JSON"
            ) from None

    def list_all(
        self, path: str, key: str, params: dict[str, Any] | None = None, limit: int | None = None
    ) -> list[dict]:
        """Every item of a paged list (or the first `limit`), following next_page_token."""
        items: list[dict] = []
        token = ""
        while True:
            page_size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(items))
            query = {**(params or {}), "page_size": page_size}
            if token:
                query["page_token"] = token
            page = self.get(path, params=query)
            items += page.get(key, [])
            token = page.get("next_page_token", "")
            if not token or (limit is not None and len(items) >= limit):
                return items if limit is None else items[:limit]
