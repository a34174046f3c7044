"""The streams service (视频流服务): cameras pulled once and relayed live to the wall and the console
over WebRTC (aiohttp + aiortc), snapshots, camera status. Run it with `python -m streams`."""
