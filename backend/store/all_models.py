"""Imports every module that defines tables, so that Base.metadata knows them all."""
from backend.store import gps_models, models  # noqa: F401
