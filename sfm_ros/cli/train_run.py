"""The run-folder checks ``sfm_eval --adapt-save`` shares with ``sfm_train``, under the names
``sfm_eval`` imports: their home is :mod:`sfm_ros.training.run_folder`. ``sfm_train``'s run
set-up is :mod:`sfm_ros.training.run_setup`.
"""
from __future__ import annotations

from sfm_ros.training.run_folder import check_writable, nearest_existing

__all__ = ["check_writable", "nearest_existing"]
