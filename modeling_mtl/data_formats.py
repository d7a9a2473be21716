"""The readers' old home, kept so that `from modeling_mtl.data_formats import ...` goes on working: every format is
now one module of `modeling_mtl/formats/` in one table (`formats.FORMATS`); the names below are those modules'.
New code imports from `modeling_mtl.formats` (or `modeling_mtl.data`)."""

from .formats import FORMATS, detect_format
from .formats.columns import standardize_dataset_dict
from .formats.common import FEATURES, SPLITS, folder_name, normalize_split_name
from .formats.conll import load as load_conll
from .formats.jointbert import load as load_jointbert
from .formats.sst2 import load as load_sst2
from .formats.tabular import NAMES as TABULAR_FORMATS
from .formats.tabular import load as load_tabular

__all__ = ["FEATURES", "FORMATS", "SPLITS", "TABULAR_FORMATS", "detect_format", "folder_name", "load_conll",
           "load_jointbert", "load_sst2", "load_tabular", "normalize_split_name", "standardize_dataset_dict"]
