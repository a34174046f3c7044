"""H.264 Annex-B helpers (码流工具): find NAL units, tell keyframes, keep parameter sets in-band.

A relayed packet must be self-sufficient for a viewer that starts at it: an IDR picture (NAL type 5)
preceded by its SPS (7) and PPS (8). Cameras that send parameter sets only out of band (SDP
sprop-parameter-sets, container extradata) get them put back in front of each IDR here.
"""
from __future__ import annotations

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8


def split_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B buffer, start codes removed. Raises ValueError if there is no start code."""
    starts: list[tuple[int, int]] = []  # (start-code position, payload position)
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        code_at = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((code_at, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    if not starts:
        raise ValueError("not an Annex-B H.264 buffer: no start code")
    nals = []
    for n, (_, payload_at) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(data)
        if end > payload_at:
            nals.append(data[payload_at:end])
    return nals


def nal_types(data: bytes) -> list[int]:
    """NAL unit types in an Annex-B buffer, in order; an empty list for a buffer without start codes."""
    try:
        return [nal[0] & 0x1F for nal in split_nals(data)]
    except ValueError:
        return []


def is_keyframe(data: bytes) -> bool:
    """True when the access unit holds an IDR slice (a viewer can start decoding here)."""
    return NAL_IDR in nal_types(data)


class ParameterSets:
    """Remembers the latest SPS/PPS of a stream and prepends them to IDR access units that lack them."""

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def learn(self, annexb: bytes) -> None:
        """Take SPS/PPS from an Annex-B buffer (a packet or Annex-B extradata)."""
        try:
            nals = split_nals(annexb)
        except ValueError:
            return
        for nal in nals:
            if nal[0] & 0x1F == NAL_SPS:
                self.sps = nal
            elif nal[0] & 0x1F == NAL_PPS:
                self.pps = nal

    def complete(self, data: bytes) -> tuple[bytes, bool]:
        """Return (access unit with parameter sets in front if it is an IDR, is_keyframe)."""
        types = nal_types(data)
        if NAL_SPS in types or NAL_PPS in types:
            self.learn(data)
        keyframe = NAL_IDR in types
        if keyframe and NAL_SPS not in types and self.sps and self.pps:
            data = b"\x00\x00\x00\x01" + self.sps + b"\x00\x00\x00\x01" + self.pps + data
        return data, keyframe
