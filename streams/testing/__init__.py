"""Test and benchmark helpers for the streams service: a real RTSP camera, the service as a process,
an aiortc viewer client. Used by tests/integration, tests/browser and bench/video."""
