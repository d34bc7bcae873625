"""udp_gso: datagrams batched per run of equal sizes arrive as the same datagrams, in order."""

from __future__ import annotations

import os
import socket

import pytest

from gateway.media import udp_gso


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


def test_runs_arrive_as_the_datagrams_they_were(sockets):
    sender, receiver = sockets
    if not udp_gso.supported(sender):
        pytest.skip("this kernel has no UDP GSO")
    # a STAP-A-like single, a slice in even fragments with a shorter last one, another
    # slice, a run longer than the kernel's 64 segments, and a larger lone last datagram
    sizes = [40] + [1226] * 9 + [700] + [1226, 1226, 900] + [1000] * 70 + [1100]
    datagrams = [os.urandom(size) for size in sizes]
    ends, end = [], 0
    for datagram in datagrams:
        end += len(datagram)
        ends.append(end)
    singles: list[bytes] = []

    def sendto(data, address):
        singles.append(bytes(data))
        sender.sendto(data, address)

    assert udp_gso.send_runs(sender, memoryview(b"".join(datagrams)), ends, receiver.getsockname(), sendto)
    received = [receiver.recv(2048) for _ in datagrams]
    assert received == datagrams
    assert singles == [datagrams[0], datagrams[-1]]  # everything else went in runs


def test_send_each_sends_from_a_given_datagram_on(sockets):
    sender, receiver = sockets
    datagrams = [b"a" * 10, b"b" * 20, b"c" * 30]
    sent: list[bytes] = []
    udp_gso.send_each(memoryview(b"".join(datagrams)), [10, 30, 60], 1, 10, ("127.0.0.1", 9),
                      lambda data, address: sent.append(bytes(data)))
    assert sent == datagrams[1:]
