"""Config as code: venue and template YAML, loaded with positions and checked whole."""

from daemon.config.desired import DesiredIntegration, DesiredState, DesiredTemplate, Tombstone
from daemon.config.limits import YamlLimits
from daemon.config.loader import (
    ConfigFiles,
    config_files,
    load_config,
    load_config_files,
    require_config_dir,
)
from daemon.config.models import TemplateFile, VenueFile, detect_venue_type
from daemon.config.problems import ConfigInvalid, ConfigProblem

__all__ = [
    "ConfigFiles",
    "ConfigInvalid",
    "ConfigProblem",
    "DesiredIntegration",
    "DesiredState",
    "DesiredTemplate",
    "TemplateFile",
    "Tombstone",
    "VenueFile",
    "YamlLimits",
    "config_files",
    "detect_venue_type",
    "load_config",
    "load_config_files",
    "require_config_dir",
]
