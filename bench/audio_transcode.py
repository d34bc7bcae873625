"""What the G.711 -> AAC transcode of one camera costs, and how close it stays to its input.

Usage: python3 bench/audio_transcode.py [--seconds 20]

Runs gateway.formats.audio_transcode.AacTranscoder (what a G.711 camera's demux thread runs) on
G.711 A-law made here from three kinds of 8 kHz audio, once with each of FFmpeg's AAC
coders: the shipped one (AAC_CODER) and the other. For each it prints the encoder's CPU
per 40 ms G.711 packet (thread CPU time; a camera sends 25 such packets a second), the
bit rate it produced, and the SNR of the decoded AAC against the decoded G.711 (after
aligning the encoder delay). No gateway, no network: in-process, single-threaded.

  tone    a 1 kHz sine at -12 dBFS (the test camera's audio)
  noise   amplitude-modulated white noise (a microphone in a noisy place)
  voice   harmonics of a gliding 100-180 Hz pitch, syllable-like envelope, room noise
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.formats import audio_transcode as audio  # noqa: E402

RATE = 8000
PACKET = 320  # samples: 40 ms, as the test camera sends
CODERS = ("fast", "twoloop")


def signal(kind: str, samples: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(samples) / RATE
    if kind == "tone":
        x = 0.25 * 32767 * np.sin(2 * np.pi * 1000 * t)
    elif kind == "noise":
        x = 3000 * rng.standard_normal(samples) * (1 + np.sin(2 * np.pi * 3 * t))
    else:
        phase = 2 * np.pi * np.cumsum(140 + 40 * np.sin(2 * np.pi * 0.7 * t)) / RATE
        harmonics = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 20))
        x = 8000 * harmonics * np.clip(0.5 + 0.5 * np.sin(2 * np.pi * 4 * t), 0, None)
        x += 300 * rng.standard_normal(samples)
    return np.clip(x, -32767, 32767).astype(np.int16)


def g711_packets(x: np.ndarray) -> list[bytes]:
    encoder = av.CodecContext.create("pcm_alaw", "w")
    encoder.sample_rate, encoder.layout, encoder.format = RATE, "mono", "s16"
    encoder.open()
    packets = []
    for i in range(len(x) // PACKET):
        frame = av.AudioFrame.from_ndarray(x[i * PACKET:(i + 1) * PACKET].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, i * PACKET
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


def decode(codec: str, rate: int, packets: list[bytes], extradata: bytes | None = None) -> np.ndarray:
    decoder = av.CodecContext.create(codec, "r")
    decoder.sample_rate, decoder.layout = rate, "mono"
    if extradata:
        decoder.extradata = extradata
    resampler = av.AudioResampler(format="flt", layout="mono", rate=audio.AAC_RATE)
    out = [r.to_ndarray()[0] for p in packets for f in decoder.decode(av.Packet(p)) for r in resampler.resample(f)]
    return np.concatenate(out)


def snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    """SNR of `decoded` against `reference`, at the encoder delay that correlates best."""
    window = slice(2000, 40000)
    delay = max(range(4096), key=lambda d: float(np.dot(reference[window], decoded[d:][window])))
    b = decoded[delay:]
    a = reference[: len(b)]
    b = b[: len(a)]
    return float(10 * np.log10(np.sum(a ** 2) / np.sum((a - b) ** 2)))


def measure(kind: str, coder: str, seconds: float) -> tuple[float, float, float]:
    """(µs of CPU per G.711 packet, kbit/s, SNR dB) for one signal and coder."""
    packets = g711_packets(signal(kind, int(seconds * RATE)))
    audio.AAC_CODER = coder
    transcoder = audio.AacTranscoder("pcm_alaw", RATE, 1)
    started = time.thread_time()
    frames = [data for i, p in enumerate(packets) for _, data in transcoder.transcode(av.Packet(p), i * 2 * PACKET)]
    cpu = time.thread_time() - started
    reference = decode("pcm_alaw", RATE, packets)
    decoded = decode("aac", audio.AAC_RATE, frames, transcoder.params.config)
    return cpu / len(packets) * 1e6, sum(map(len, frames)) * 8 / seconds / 1000, snr_db(reference, decoded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    shipped = audio.AAC_CODER
    print(f"G.711 A-law 8 kHz -> AAC {audio.AAC_RATE} Hz mono 32 kbit/s; {args.seconds:.0f} s of each signal; "
          f"shipped coder: {shipped}")
    print(f"{'signal':>6} {'coder':>8} {'us/packet':>9} {'% of a core':>11} {'kbit/s':>7} {'SNR dB':>7}")
    for kind in ("tone", "noise", "voice"):
        for coder in CODERS:
            us, kbits, snr = measure(kind, coder, args.seconds)
            print(f"{kind:>6} {coder:>8} {us:>9.0f} {us * 25 / 1e4:>11.2f} {kbits:>7.1f} {snr:>7.1f}")
    audio.AAC_CODER = shipped
    print("(% of a core: 25 packets a second, one camera; measured in a tight loop, the demux thread pays more)")


if __name__ == "__main__":
    main()
