"""Imports every module that defines tables, so that Base.metadata knows them all."""
from backend.store import duty_models, emergency_models, gps_models, models  # noqa: F401
