"""udp_gso: a frame's datagrams, sent in one sendmmsg (runs of equal sizes as GSO), arrive
as the same datagrams, in order."""

from __future__ import annotations

import os
import socket

import pytest

from gateway.outputs.webrtc import udp_gso

pytestmark = pytest.mark.unit


@pytest.fixture
def sockets():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.settimeout(2)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    yield sender, receiver
    sender.close()
    receiver.close()


def packed(datagrams: list[bytes]) -> tuple[bytearray, object, list[int]]:
    """The datagrams one after the other in one buffer, its cffi pointer, their ends."""
    buffer = bytearray(b"".join(datagrams))
    ends, end = [], 0
    for datagram in datagrams:
        end += len(datagram)
        ends.append(end)
    return buffer, udp_gso.ffi.from_buffer(buffer), ends


@pytest.mark.parametrize("gso", [True, False])
def test_a_frame_arrives_as_the_datagrams_it_was(sockets, gso):
    sender, receiver = sockets
    batch = udp_gso.DatagramBatch(sender, receiver.getsockname())
    if gso and not batch.gso:
        pytest.skip("this kernel has no UDP GSO")
    batch.gso = gso
    # a STAP-A-like single, a slice in even fragments with a shorter last one, another
    # slice, a run longer than the kernel's 64 segments, a larger lone last datagram,
    # and more singles than one sendmmsg call takes
    sizes = [40] + [1226] * 9 + [700] + [1226, 1226, 900] + [1000] * 70 + [1100] + [50, 60] * 40
    datagrams = [os.urandom(size) for size in sizes]
    buffer, pointer, ends = packed(datagrams)
    assert batch.send(pointer, udp_gso.Datagrams(ends)) == len(datagrams)
    assert [receiver.recv(2048) for _ in datagrams] == datagrams


@pytest.mark.parametrize("gso", [True, False])
def test_what_the_kernel_refuses_stops_the_batch_and_says_where(sockets, gso):
    """The caller sends the rest its own way (the transport, which reports the error)."""
    sender, receiver = sockets
    batch = udp_gso.DatagramBatch(sender, receiver.getsockname())
    batch.gso = batch.gso and gso
    datagrams = [b"a" * 100, b"b" * 100, b"c" * 70000, b"d" * 100]  # over UDP's 64 KiB
    buffer, pointer, ends = packed(datagrams)
    assert batch.send(pointer, udp_gso.Datagrams(ends)) == 2
    assert [receiver.recv(2048), receiver.recv(2048)] == datagrams[:2]
    assert batch.send(pointer + ends[2], udp_gso.Datagrams([100])) == 1  # the socket goes on
    assert receiver.recv(2048) == datagrams[3]


def test_ipv6_addresses_are_laid_out_for_the_kernel():
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        receiver.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with sender, receiver:
        receiver.settimeout(2)
        batch = udp_gso.DatagramBatch(sender, receiver.getsockname()[:2])
        buffer, pointer, ends = packed([b"hello", b"world!"])
        assert batch.send(pointer, udp_gso.Datagrams(ends)) == 2
        assert [receiver.recv(100), receiver.recv(100)] == [b"hello", b"world!"]
