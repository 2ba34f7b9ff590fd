"""The paper's experiments as resumable studies whose jobs several workers can share."""

from neuromask.studies.config import STUDIES, StudyConfig, load_study_config
from neuromask.studies.run import run_study

__all__ = ["STUDIES", "StudyConfig", "load_study_config", "run_study"]
