"""Project loading: files (YAML, JSON, STG) and wire dicts -> ``ProjectSpec``.

The only part of the coordinator's domain side that reads files; the
scheduling core receives validated specs and never touches a path. Tasks are
validated by the one task schema (``workhive.coordinator.task_schema``).
"""

from workhive.coordinator.project_files.loader import (
    find_cycle,
    load_project,
    project_from_dict,
)
from workhive.coordinator.project_files.stg import (
    BestKnown,
    load_best_known,
    load_stg,
    parse_stg,
)
from workhive.coordinator.task_schema import ProjectError, task_from_dict

__all__ = [
    "BestKnown",
    "ProjectError",
    "find_cycle",
    "load_best_known",
    "load_project",
    "load_stg",
    "parse_stg",
    "project_from_dict",
    "task_from_dict",
]
