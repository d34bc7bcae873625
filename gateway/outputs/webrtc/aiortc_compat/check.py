"""Every aiortc, aioice and pylibsrtp internal the gateway relies on, and the check that they are there.

The gateway reaches past these libraries' public API (see install.py for why); another
release may rename or drop any of these names. They are checked once, when the first
WebRTC viewer installs the patches, against the real objects: module attributes on the
imported modules, and what an object has on a throwaway one made through the public
constructors (an RTCRtpSender on an RTCDtlsTransport on an RTCIceTransport, with its
aioice Connection, a StunProtocol given a transport as asyncio gives it one, a
CandidatePair, a pylibsrtp Session). `hasattr` on those sees the name-mangled private
fields (`_RTCRtpSender__packet_count`) exactly as the lean sender will touch them, where
reading the classes' code would only guess; making them costs a few milliseconds, once
per process, and opens no socket.

The modules whose names are checked are imported by name here (never `from x import y`),
so a missing name is reported rather than raised; the modules that use the lean sender's
names are imported only once the check has found them all (install.py).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

log = logging.getLogger(__name__)

# The owners of the names below that are objects (the others are modules).
SENDER = "aiortc.rtcrtpsender.RTCRtpSender()"
TRANSCEIVER = "aiortc.rtcrtptransceiver.RTCRtpTransceiver()"
DTLS = "aiortc.rtcdtlstransport.RTCDtlsTransport()"
ICE = "aiortc.rtcicetransport.RTCIceTransport()"
ICE_CONNECTION = "aioice.ice.Connection()"
ICE_PROTOCOL = "aioice.ice.StunProtocol()"
ICE_PAIR = "aioice.ice.CandidatePair()"
SRTP_SESSION = "pylibsrtp.Session()"
LIBSRTP = "pylibsrtp._binding.lib"
OBJECTS = (SENDER, TRANSCEIVER, DTLS, ICE, ICE_CONNECTION, ICE_PROTOCOL, ICE_PAIR, SRTP_SESSION, LIBSRTP)


@dataclass(frozen=True, slots=True)
class Internal:
    owner: str  # a module's name, or one of the objects above
    name: str

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"


def internals(owner: str, *names: str) -> tuple[Internal, ...]:
    return tuple(Internal(owner, name) for name in names)


# What any peer relies on, whichever sender it uses (install.py, passthrough.py,
# connection.py, peer.py): without these, WebRTC peers may fail.
PEER_INTERNALS = (
    *internals("aiortc.rtcrtpsender", "get_encoder"),  # replaced: PassthroughEncoder
    *internals("aiortc.codecs", "CODECS", "HEADER_EXTENSIONS"),  # H.264 Main/High, H265 added, abs-send-time out
    *internals("aiortc.rtcpeerconnection", "is_codec_compatible"),  # wrapped: H265 of one profile and tier
    *internals(TRANSCEIVER, "_codecs"),  # the negotiated codecs, the first sent (the h5s player's answer picks)
    *internals("aiortc.clock", "current_ntp_time"),  # replaced: the same time without datetime
    *internals("aiortc.rtcrtpparameters", "RTCRtcpFeedback"),
    *internals("aiortc.sdp", "SessionDescription", "candidate_from_sdp"),
    *internals("aioice.ice", "get_host_addresses", "CONSENT_INTERVAL", "CONSENT_FAILURES"),  # replaced
    *internals(SENDER, "_send_keyframe"),  # replaced per peer: PLI/FIR replays the cached GOP
    *internals(DTLS, "_set_role"),  # the DTLS server role
)

# What the lean sender relies on (install.py's sender hook, takeover.py, lean_sender.py,
# rtcp_reader.py): without any of these, peers use aiortc's own sender.
LEAN_INTERNALS = (
    *internals("aiortc.rtcrtpsender", "random_sequence_number"),
    *internals(
        "aiortc.rtp",
        "RTP_HISTORY_SIZE",
        "RtcpByePacket",
        "RtcpSdesPacket",
        "RtcpSenderInfo",
        "RtcpSourceInfo",
        "RtcpSrPacket",
        "is_rtcp",
        "pack_header_extensions",
    ),
    *internals("aiortc.utils", "random32"),
    *internals("aiortc.rtcdtlstransport", "State"),
    *internals(
        SENDER,
        "_run_rtcp",  # replaced: the lean sender sends the reports
        "_send_rtcp",
        "_retransmit",  # replaced per peer: NACKs answered from the lean sender's history
        "_ssrc",
        "_rtx_ssrc",
        "_RTCRtpSender__rtcp_started",
        "_RTCRtpSender__rtcp_exited",
        "_RTCRtpSender__ntp_timestamp",
        "_RTCRtpSender__rtp_timestamp",
        "_RTCRtpSender__octet_count",
        "_RTCRtpSender__packet_count",
    ),
    *internals(
        DTLS,
        "_state",
        "_ssl",
        "_tx_srtp",
        "_rx_srtp",
        "_handle_rtcp_data",
        "_RTCDtlsTransport__tx_bytes",
        "_RTCDtlsTransport__tx_packets",
        "_RTCDtlsTransport__rx_bytes",
        "_RTCDtlsTransport__rx_packets",
    ),
    *internals(ICE, "_connection"),
    *internals(ICE_CONNECTION, "_nominated", "data_received"),  # data_received: replaced per peer (RtcpReader)
    *internals(ICE_PROTOCOL, "transport"),
    *internals(ICE_PAIR, "protocol", "remote_addr"),
    *internals(SRTP_SESSION, "_srtp"),
    *internals("pylibsrtp._binding", "ffi", "lib"),
    *internals(LIBSRTP, "srtp_protect", "srtp_unprotect_rtcp"),
)


def missing(wanted: tuple[Internal, ...], owners: Mapping[str, object]) -> list[Internal]:
    """The names in `wanted` that their owner lacks (all of them, for an owner not there)."""
    return [i for i in wanted if i.owner not in owners or not hasattr(owners[i.owner], i.name)]


def real_owners() -> dict[str, object]:
    """The modules and throwaway objects the names are checked on (see the module docstring);
    one that cannot be had is left out, and so all its names are missing."""
    owners: dict[str, object] = {}
    for internal in PEER_INTERNALS + LEAN_INTERNALS:
        if internal.owner not in OBJECTS and internal.owner not in owners:
            try:
                owners[internal.owner] = importlib.import_module(internal.owner)
            except ImportError:
                pass
    owners.update(throwaway_objects())
    return owners


def throwaway_objects() -> dict[str, object]:
    """One object of each kind, made as aiortc and aioice make them, until one cannot be made."""
    import aioice
    import aiortc
    import pylibsrtp

    made: dict[str, object] = {}
    try:
        made[LIBSRTP] = importlib.import_module("pylibsrtp._binding").lib
        made[SRTP_SESSION] = pylibsrtp.Session(
            pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        )
        made[ICE] = ice = aiortc.RTCIceTransport(aiortc.RTCIceGatherer())
        made[ICE_CONNECTION] = connection = ice._connection
        made[DTLS] = dtls = aiortc.RTCDtlsTransport(ice, [aiortc.RTCCertificate.generateCertificate()])
        made[SENDER] = sender = aiortc.RTCRtpSender("video", dtls)
        made[TRANSCEIVER] = aiortc.RTCRtpTransceiver("video", aiortc.RTCRtpReceiver("video", dtls), sender)
        protocol = aioice.ice.StunProtocol(connection)
        protocol.connection_made(asyncio.DatagramTransport())  # what asyncio does once the socket is open
        made[ICE_PROTOCOL] = protocol
        made[ICE_PAIR] = aioice.ice.CandidatePair(protocol, aioice.Candidate("0", 1, "udp", 1, "127.0.0.1", 9, "host"))
    except Exception as e:  # another release's constructors: what is left unmade has all its names missing
        log.warning("aiortc_compat: cannot make the objects to check beyond %s: %r", ", ".join(made) or "none", e)
    return made


def versions() -> str:
    found = []
    for package in ("aiortc", "aioice", "pylibsrtp"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"no {package}")
    return ", ".join(found)


def check(owners: Mapping[str, object] | None = None) -> bool:
    """Check every name once and log, in one line, what is missing; True when the lean
    sender can be used (everything it needs is there)."""
    owners = real_owners() if owners is None else owners
    for_peers, for_lean = missing(PEER_INTERNALS, owners), missing(LEAN_INTERNALS, owners)
    if for_peers:
        log.error(
            "aiortc_compat: %s lack %s: WebRTC peers may fail (the versions pyproject.toml allows are the tested ones)",
            versions(),
            ", ".join(map(str, for_peers)),
        )
    if for_lean:
        log.warning(
            "aiortc_compat: %s lack %s: WebRTC peers will use aiortc's own (slower) sender",
            versions(),
            ", ".join(map(str, for_lean)),
        )
    return not for_lean
