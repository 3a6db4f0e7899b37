"""titans_ts.datasets: the dataset catalogue, the exact benchmark protocol, and user data.

Shipped inside the wheel as ``titans_ts.datasets`` (the repository keeps it at the top level as
``datasets/``; the bare name ``datasets`` belongs to another PyPI package).
"""

from .catalogue import (
    CATALOGUE,
    ChecksumError,
    DataNotFoundError,
    DatasetInfo,
    cache_dir,
    data_roots,
    dataset_info,
    download,
    find_file,
    sha256_of,
)
from .frames import (
    DataValidationError,
    SeriesCollection,
    fill_gaps,
    from_array,
    from_frame,
    period_freq,
    to_frame,
)
from .gluonts_io import frame_to_gluonts, from_gluonts, to_gluonts
from .ltsf import LTSFSplits, WindowDataset, load_ltsf_frame, ltsf_borders, ltsf_splits
from .scaling import StandardScaler
from .timefeatures import TIME_FEATURES, resolve_time_features, time_feature_values
from .tsf import TSFData, load_tsf, read_tsf
from .windows import BATCH_KEYS, SeriesWindows, collate_windows, window_loader

__all__ = [
    "CATALOGUE", "ChecksumError", "DataNotFoundError", "DatasetInfo", "cache_dir", "data_roots",
    "dataset_info", "download", "find_file", "sha256_of",
    "DataValidationError", "SeriesCollection", "fill_gaps", "from_array", "from_frame",
    "period_freq", "to_frame",
    "frame_to_gluonts", "from_gluonts", "to_gluonts",
    "LTSFSplits", "WindowDataset", "load_ltsf_frame", "ltsf_borders", "ltsf_splits",
    "StandardScaler",
    "TIME_FEATURES", "resolve_time_features", "time_feature_values",
    "TSFData", "load_tsf", "read_tsf",
    "BATCH_KEYS", "SeriesWindows", "collate_windows", "window_loader",
]
