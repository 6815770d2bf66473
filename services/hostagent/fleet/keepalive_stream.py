"""etcd's LeaseKeepAlive call spoken directly over HTTP/2, many keepalives per frame.

The fleet simulator renews thousands of leases per second from one process.
Through grpc.aio every keepalive and every reply is a message of its own, a
trip through gRPC core's completion queue each way: measured at 150-175 us
of CPU per keepalive and its reply (2,500 leases, TTL 15 s), a third of a core
at 10,000 hosts that the benchmarks would take away from the control plane,
though on a real cloud each host renews its own lease on its own machine.

Here the call is the same bidirectional LeaseKeepAlive stream, and etcd still
receives one LeaseKeepAliveRequest message per lease, but a batch of them
goes out packed into one HTTP/2 DATA frame and the replies are parsed from
whatever frames arrive. The h2 library does the HTTP/2 framing, header
compression and flow control; this module adds gRPC's 5-byte message framing
over plain-text HTTP/2 (etcd's client port without TLS, as Stratus runs it).

Whatever ends the stream (etcd closing it, a gRPC error status, the socket
dropping, or etcd not answering for STALL_S) fails `send()` with
aetcd.ConnectionFailedError, the error the fleet's retry loop already handles.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable, Iterable

import aetcd
import h2.config
import h2.connection
import h2.events
import h2.exceptions
from aetcd import rpc

PATH = "/etcdserverpb.Lease/LeaseKeepAlive"
# No reply for this long while keepalives are outstanding: etcd is hung or
# the network is partitioned (what gRPC's keepalive pings catch elsewhere).
STALL_S = 10.0
_HEADER = struct.Struct(">BI")  # gRPC message framing: compressed flag, length


def _message(lease_id: int) -> bytes:
    body = rpc.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()
    return _HEADER.pack(0, len(body)) + body


class KeepAliveStream(asyncio.Protocol):
    """One HTTP/2 connection to etcd carrying one LeaseKeepAlive stream.

    `on_reply(lease_id, ttl)` is called for every reply, in the event loop; a
    TTL of 0 or less means etcd no longer knows the lease."""

    def __init__(
        self, authority: str, on_reply: Callable[[int, int], None], stall_s: float = STALL_S
    ) -> None:
        self._authority = authority
        self._on_reply = on_reply
        self._stall_s = stall_s
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self._transport: asyncio.Transport | None = None
        self._stream_id = 0
        self._buffer = bytearray()
        self._window = asyncio.Event()
        self._error: str | None = None
        # Keepalives sent and not answered yet, and when etcd last answered one.
        self._unanswered = 0
        self._last_progress = time.monotonic()

    @classmethod
    async def open(
        cls, host: str, port: int, on_reply: Callable[[int, int], None], stall_s: float = STALL_S
    ) -> KeepAliveStream:
        """Connect and start the call; bound it with asyncio.timeout (a hung etcd)."""
        loop = asyncio.get_running_loop()
        try:
            _, stream = await loop.create_connection(
                lambda: cls(f"{host}:{port}", on_reply, stall_s), host, port
            )
        except OSError as exc:
            raise aetcd.ConnectionFailedError(f"cannot reach etcd at {host}:{port}: {exc}") from exc
        return stream

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def send(self, lease_ids: Iterable[int]) -> None:
        """Send a keepalive for each lease, as few DATA frames as flow control allows."""
        if self._unanswered and time.monotonic() - self._last_progress > self._stall_s:
            self._fail(f"etcd has not answered a keepalive for {self._stall_s:g} s")
        self._raise_if_broken()  # also for an empty batch
        messages = [_message(lease_id) for lease_id in lease_ids]
        if not self._unanswered:
            self._last_progress = time.monotonic()
        self._unanswered += len(messages)
        view = memoryview(b"".join(messages))
        while view:
            room = min(
                self._h2.local_flow_control_window(self._stream_id),
                self._h2.max_outbound_frame_size,
            )
            if room <= 0:
                self._window.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._window.wait(), self._stall_s)
                self._raise_if_broken()  # the stream can only break while we wait
                continue
            self._h2.send_data(self._stream_id, bytes(view[:room]))
            view = view[room:]
            self._flush()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._h2.initiate_connection()
        self._stream_id = self._h2.get_next_available_stream_id()
        self._h2.send_headers(
            self._stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", PATH),
                (":authority", self._authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail(f"HTTP/2 protocol error: {exc}")
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self._buffer += event.data
                self._parse_replies()
            elif isinstance(event, h2.events.WindowUpdated):
                self._window.set()
            elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                self._check_status(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self._fail("etcd ended the keepalive stream")
            elif isinstance(event, h2.events.StreamReset):
                self._fail(f"etcd reset the keepalive stream (HTTP/2 error {event.error_code})")
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._fail(f"etcd closed the connection (HTTP/2 error {event.error_code})")
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection to etcd lost: {exc or 'closed'}")

    # internals

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _parse_replies(self) -> None:
        buffer, offset = self._buffer, 0
        while len(buffer) - offset >= _HEADER.size:
            _, length = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + length
            if end > len(buffer):
                break
            body = bytes(buffer[offset + _HEADER.size : end])
            reply = rpc.LeaseKeepAliveResponse.FromString(body)
            offset = end
            self._unanswered -= 1
            self._last_progress = time.monotonic()
            self._on_reply(reply.ID, reply.TTL)
        del buffer[:offset]

    def _check_status(self, headers: list[tuple[bytes, bytes]]) -> None:
        fields = {bytes(k).lower(): bytes(v) for k, v in headers}
        status = fields.get(b":status")
        if status is not None and status != b"200":
            self._fail(f"etcd answered the keepalive stream with HTTP {status.decode()}")
        code = fields.get(b"grpc-status")
        if code is not None and code != b"0":
            message = fields.get(b"grpc-message", b"").decode(errors="replace")
            self._fail(f"etcd ended the keepalive stream: gRPC status {code.decode()} {message}")

    def _fail(self, reason: str) -> None:
        if self._error is None:
            self._error = reason
        self._window.set()  # a sender waiting for flow control wakes to see it
        self.close()

    def _raise_if_broken(self) -> None:
        if self._error is not None:
            raise aetcd.ConnectionFailedError(self._error)
