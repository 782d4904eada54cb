"""Raw SSH requests, one at a time, and the server's own answer to each.

OpenSSH's client hides most refusals behind its own messages and skips
requests it knows are useless; paramiko lets a test send every channel open,
channel request and global request a hostile client could send, with
want_reply set, and read exactly what the server answered:

- a channel open: the Channel, or the server's OPEN_FAILURE reason code;
- a channel request: "success", "failure", or "closed" (the server closed the
  channel instead of answering);
- a global request: "success" or "failure".

Every answer also checks that the connection is still up, so a server that
simply hung up is never mistaken for one that refused.
"""

from __future__ import annotations

import queue
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.common import (
    MSG_CHANNEL_CLOSE,
    MSG_CHANNEL_FAILURE,
    MSG_CHANNEL_SUCCESS,
    cMSG_CHANNEL_OPEN,
    cMSG_CHANNEL_REQUEST,
)
from paramiko.message import Message

ADMINISTRATIVELY_PROHIBITED = paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED  # 1
CONNECT_FAILED = paramiko.common.OPEN_FAILED_CONNECT_FAILED  # 2
UNKNOWN_CHANNEL_TYPE = paramiko.common.OPEN_FAILED_UNKNOWN_CHANNEL_TYPE  # 3
ANSWER_TIMEOUT = 15.0

# Each channel request a session client can send, with plausible fields.
SESSION_REQUESTS: dict[str, tuple] = {
    "exec": ("exec", ("id; echo PROBE-RAN",)),
    "shell": ("shell", ()),
    "pty-req": ("pty-req", ("xterm", 80, 24, 0, 0, b"\x00")),
    "subsystem sftp": ("subsystem", ("sftp",)),
    "env LANG": ("env", ("LANG", "C.UTF-8")),
    "env LD_PRELOAD": ("env", ("LD_PRELOAD", "/tmp/evil.so")),
    "auth-agent-req": ("auth-agent-req@openssh.com", ()),
    "x11-req": ("x11-req", (False, "MIT-MAGIC-COOKIE-1", "0123456789abcdef0123456789abcdef", 0)),
}


@dataclass(frozen=True)
class OpenRefused(Exception):
    """The server answered a channel open with OPEN_FAILURE."""

    code: int
    text: str


class Probe:
    """An authenticated paramiko client that records the server's answers.

    `sock` may be a socket or a paramiko Channel (a direct-tcpip channel on
    the relay, i.e. a ProxyJump).
    """

    def __init__(self, sock, user: str, key_path: Path, pinned_line: str) -> None:
        self.transport = paramiko.Transport(sock)
        self._answers: dict[int, queue.Queue[str]] = {}
        table = dict(self.transport._channel_handler_table)
        for ptype, answer in ((MSG_CHANNEL_SUCCESS, "success"), (MSG_CHANNEL_FAILURE, "failure"), (MSG_CHANNEL_CLOSE, "closed")):
            table[ptype] = self._recording(table[ptype], answer)
        self.transport._channel_handler_table = table
        kind, blob = pinned_line.split()[:2]
        try:
            self.transport.get_security_options().key_types = [kind]
            self.transport.start_client(timeout=ANSWER_TIMEOUT)
            shown = self.transport.get_remote_server_key()
            assert (shown.get_name(), shown.get_base64()) == (kind, blob), "the server is not the pinned one"
            self.transport.auth_publickey(user, paramiko.PKey.from_path(key_path))
        except BaseException:
            self.transport.close()
            raise

    @classmethod
    def connect(cls, address: str, port: int, user: str, key_path: Path, pinned_line: str) -> Probe:
        return cls(socket.create_connection((address, port), timeout=ANSWER_TIMEOUT), user, key_path, pinned_line)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recording(self, handler, answer: str):
        def record(channel: paramiko.Channel, message: Message) -> None:
            self._answers.setdefault(channel.get_id(), queue.Queue()).put(answer)
            handler(channel, message)

        return record

    def _still_up(self) -> None:
        assert self.transport.is_active(), f"the server dropped the connection: {self.transport.get_exception()!r}"

    # --- channel opens ----------------------------------------------------

    def open(self, kind: str, *fields) -> paramiko.Channel:
        """Open a channel of any kind with the given type-specific fields; OpenRefused on OPEN_FAILURE."""
        transport = self.transport
        with transport.lock:
            window = transport._sanitize_window_size(None)
            packet = transport._sanitize_packet_size(None)
            chanid = transport._next_channel()
            message = Message()
            message.add_byte(cMSG_CHANNEL_OPEN)
            message.add_string(kind)
            message.add_int(chanid)
            message.add_int(window)
            message.add_int(packet)
            _add_fields(message, fields)
            channel = paramiko.Channel(chanid)
            transport._channels.put(chanid, channel)
            transport.channel_events[chanid] = event = threading.Event()
            transport.channels_seen[chanid] = True
            channel._set_transport(transport)
            channel._set_window(window, packet)
            transport.saved_exception = None
        self._answers[chanid] = queue.Queue()
        transport._send_user_message(message)
        assert event.wait(ANSWER_TIMEOUT), f"no answer to the {kind} channel open"
        self._still_up()
        if transport._channels.get(chanid) is not None:
            return channel
        failure = transport.saved_exception
        assert isinstance(failure, paramiko.ChannelException), f"{kind}: unexpected {failure!r}"
        raise OpenRefused(failure.code, failure.text)

    def open_session(self) -> paramiko.Channel:
        return self.open("session")

    def direct_tcpip(self, host: str, port: int) -> paramiko.Channel:
        return self.open("direct-tcpip", host, port, "127.0.0.1", 50000)

    def direct_streamlocal(self, path: str) -> paramiko.Channel:
        return self.open("direct-streamlocal@openssh.com", path, "", 0)

    def tun(self, mode: int = 1, unit: int = 0x7FFFFFFF) -> paramiko.Channel:
        """tun@openssh.com: mode 1 point-to-point (layer 3), 2 ethernet; unit ANY."""
        return self.open("tun@openssh.com", mode, unit)

    # --- requests ---------------------------------------------------------

    def request(self, channel: paramiko.Channel, name: str, *fields) -> str:
        """Send one channel request with want_reply; return "success", "failure" or "closed"."""
        message = Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string(name)
        message.add_boolean(True)
        _add_fields(message, fields)
        self.transport._send_user_message(message)
        try:
            answer = self._answers[channel.get_id()].get(timeout=ANSWER_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no answer to the {name} request") from None
        self._still_up()
        return answer

    def global_request(self, name: str, *fields) -> str:
        """Send one global request with want_reply; return "success" or "failure"."""
        answer = self.transport.global_request(name, _field_tuple(fields), wait=True)
        self._still_up()
        return "failure" if answer is None else "success"

    def output(self, channel: paramiko.Channel, timeout: float = ANSWER_TIMEOUT) -> tuple[bytes, int]:
        """What a channel printed (stdout and stderr) until the server closed it, and its exit status."""
        channel.settimeout(timeout)
        chunks = []
        try:
            while True:
                data = channel.recv(4096)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            raise AssertionError(f"the channel was not closed within {timeout} s; got {b''.join(chunks)!r}") from None
        while channel.recv_stderr_ready():
            chunks.append(channel.recv_stderr(4096))
        return b"".join(chunks), channel.recv_exit_status()


def _add_fields(message: Message, fields: tuple) -> None:
    for field in fields:
        if isinstance(field, bool):
            message.add_boolean(field)
        elif isinstance(field, int):
            message.add_int(field)
        else:
            message.add_string(field)


def _field_tuple(fields: tuple) -> tuple | None:
    """paramiko's global_request adds fields with Message.add, which guesses types the same way."""
    return tuple(fields) if fields else None
