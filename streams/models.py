"""The camera table (视频监控点位) lives in the store; re-exported here for the streams service."""
from backend.store.base import Base
from backend.store.models import Camera

__all__ = ["Base", "Camera"]
