"""The dataset catalogue: what each benchmark file is, where it comes from and how to find it.

Files are looked up, in this order, under

1. an explicit ``root=`` argument,
2. the directory named by the environment variable ``TITANS_TS_DATA``,
3. the user cache directory (``$XDG_CACHE_HOME/titans-ts`` or ``~/.cache/titans-ts``), which is
   where ``titans-ts data download NAME`` puts files.

Inside a root a file may sit in its group's sub-folder (``ltsf/ETTh1.csv``) or directly under the
root (``ETTh1.csv``), plain or gzip-compressed (``ETTh1.csv.gz``). Checksums are SHA-256 of the
canonical, uncompressed bytes, so a ``.gz`` copy verifies against the same value.

Nothing here touches the network unless :func:`download` is called explicitly.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DatasetInfo",
    "CATALOGUE",
    "DataNotFoundError",
    "ChecksumError",
    "dataset_info",
    "data_roots",
    "cache_dir",
    "find_file",
    "open_text",
    "sha256_of",
    "download",
]

ENV_VAR = "TITANS_TS_DATA"


class DataNotFoundError(FileNotFoundError):
    """A catalogue file is not in any of the places it is looked for."""


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the catalogue's, or the file cannot be read back (a
    truncated or corrupt ``.gz``)."""


@dataclass(frozen=True)
class DatasetInfo:
    """One catalogue entry.

    Attributes:
        name: catalogue key (``"ETTh1"``).
        filename: canonical file name (``"ETTh1.csv"``); a ``.gz`` copy is also accepted.
        group: sub-folder inside a data root (``"ltsf"`` or ``"monash"``).
        kind: ``"ltsf"`` (wide CSV, first column ``date``) or ``"tsf"`` (Monash format).
        freq: pandas frequency alias of the rows (``"h"``, ``"15min"``, ``"MS"`` ...).
        url: canonical download address, or ``None`` where the source offers no direct link.
        sha256: accepted SHA-256 digests of the uncompressed file (the first is the one ``url``
            serves; others are byte-for-byte the same table with LF instead of CRLF line endings,
            as other public mirrors carry it); empty if not pinned.
        size: size in bytes of the file ``url`` serves, or ``None``.
        target: name of the target column (``"OT"`` for the long-horizon sets).
        split: split rule: ``"ett_hour"``, ``"ett_minute"`` or ``"ratio_70_10_20"`` (see
            :func:`titans_ts.datasets.ltsf_borders`); ``None`` for collections of series.
        season: the natural seasonal period in rows (used by seasonal-naive baselines, MASE).
        horizon: the conventional forecast horizon for collections (Monash), else ``None``.
        description: one line for humans.
    """

    name: str
    filename: str
    group: str
    kind: str
    freq: str | None
    url: str | None
    sha256: tuple[str, ...]
    size: int | None = None
    target: str | None = None
    split: str | None = None
    season: int | None = None
    horizon: int | None = None
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


_ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{}"
# The Autoformer release (Wu et al., 2021) is a Google Drive folder with no stable direct link; the
# Time-Series-Library maintainers mirror the same files on the Hugging Face hub.
_TSLIB_URL = "https://huggingface.co/datasets/thuml/Time-Series-Library/resolve/main/{}"
_MONASH_URL = "https://zenodo.org/records/{}"

CATALOGUE: dict[str, DatasetInfo] = {}


def _add(info: DatasetInfo) -> None:
    CATALOGUE[info.name] = info


for _name, _sha, _size in [
    ("ETTh1", "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066", 2589657),
    ("ETTh2", "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b", 2417960),
]:
    _add(DatasetInfo(_name, f"{_name}.csv", "ltsf", "ltsf", "h", _ETT_URL.format(f"{_name}.csv"),
                     (_sha,), _size, "OT", "ett_hour", 24,
                     description="Electricity transformer temperature, hourly, 2016-07..2018-06"))
for _name, _sha, _size in [
    ("ETTm1", "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e", 10360719),
    ("ETTm2", "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd", 9677236),
]:
    _add(DatasetInfo(_name, f"{_name}.csv", "ltsf", "ltsf", "15min",
                     _ETT_URL.format(f"{_name}.csv"), (_sha,), _size, "OT", "ett_minute", 96,
                     description="Electricity transformer temperature, every 15 minutes"))
_add(DatasetInfo("weather", "weather.csv", "ltsf", "ltsf", "10min",
                 _TSLIB_URL.format("weather/weather.csv"),
                 ("34ee981d07313e51da2a50bb600072c8ae4a69cb4b0651f4cb93a069d7a2ba63",
                  "9b2b19b13e342d9c9b9c51620d42b4be232df7fba30e7f5c4968b7c79ab138ad"), 7235425,
                 "OT", "ratio_70_10_20", 144,
                 description="Jena weather station, 21 indicators every 10 minutes, 2020"))
_add(DatasetInfo("national_illness", "national_illness.csv", "ltsf", "ltsf", "W-TUE",
                 _TSLIB_URL.format("illness/national_illness.csv"),
                 ("93601f64d2566dc796ca4305adad8b8560c2db1a1ff04543c3bd813a7263570a",
                  "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395"), 67620,
                 "OT", "ratio_70_10_20", 52, aliases=("illness", "ili"),
                 description="US CDC influenza-like illness, weekly, 2002..2020"))
_add(DatasetInfo("electricity", "electricity.csv", "ltsf", "ltsf", "h",
                 _TSLIB_URL.format("electricity/electricity.csv"),
                 ("7e45845d54c5219bad0ae6bc1b5316cf8ff9cead5d33fa998a5a51c2e4a497ad",
                  "10b4ddd095548839274ce4d55d3c7d6842b4bfa69ac2a4321a7608622da7b4eb"), 95581762,
                 "OT", "ratio_70_10_20", 24, aliases=("ecl",),
                 description="Hourly consumption of 321 clients, 2016..2019 (ECL)"))
_add(DatasetInfo("traffic", "traffic.csv", "ltsf", "ltsf", "h",
                 _TSLIB_URL.format("traffic/traffic.csv"),
                 ("cb06463d56fa17d87f47027cd9389ceae82a69eddee51cdb61480e120dab0b16",), 136478119,
                 "OT", "ratio_70_10_20", 24,
                 description="Hourly road occupancy of 862 San Francisco sensors, 2016..2018"))
_add(DatasetInfo("exchange_rate", "exchange_rate.csv", "ltsf", "ltsf", "D",
                 _TSLIB_URL.format("exchange_rate/exchange_rate.csv"),
                 ("48b4d9d3d508f5104162e85b9a6042e3557fde11aa9f2944eba8c0d0efc89842",
                  "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97"), 637800,
                 "OT", "ratio_70_10_20", 5, aliases=("exchange",),
                 description="Daily exchange rates of 8 countries, 1990..2016"))

# Monash forecasting archive (forecastingdata.org). The archive distributes zip files on Zenodo;
# put the extracted .tsf (or .tsf.gz) under <root>/monash/ and the loaders find it by name.
for _name, _file, _freq, _season, _h, _digest, _bytes, _rec in [
    ("m1_monthly", "m1_monthly_dataset.tsf", "MS", 12, 18,
     "0c9cb65c1ad1d7acf34ef659d7669fddfd5fb54ca484762c2706e02d2e89e66e", 313600, "4656159"),
    ("m1_quarterly", "m1_quarterly_dataset.tsf", "QS", 4, 8,
     "d8c1c3c3372fca578fef3f3e032c975199c7c8b3af93fd099c83187c778bb219", 53754, "4656154"),
    ("m1_yearly", "m1_yearly_dataset.tsf", "YS", 1, 6,
     "1855ef465246d2afaf1c91d7d2f03b7cb9678a65e84309c8350ef7223737e16c", 30557, "4656193"),
    ("m3_monthly", "m3_monthly_dataset.tsf", "MS", 12, 18,
     "962e5e217d3c98780ef240416daa4773a8e65961ea47e0a769178be58622d9c5", 960208, "4656298"),
    ("m3_quarterly", "m3_quarterly_dataset.tsf", "QS", 4, 8,
     "f2c52d0e4c8e948cd66dab139459609b71efbbf063f19927b8bd5d71d0512f16", 253744, "4656262"),
    ("m3_yearly", "m3_yearly_dataset.tsf", "YS", 1, 6,
     "ca9f01bf47f46f18d656ff8fe9c4e018162ae219071b8df5f41ee3cf7d53e2bf", 125743, "4656222"),
    ("m3_other", "m3_other_dataset.tsf", None, 1, 8,
     "a7681e0f5399a4323b14d2c7176bec871898addbd2b1f116bcccfb966ade5421", 80003, "4656335"),
    ("nn5_daily", "nn5_daily_dataset_without_missing_values.tsf", "D", 7, 56,
     "7a831669420e9c98180bf6c681b6bb34c27d256a93aa604afa00a5b0e12e6cc2", 1479606, "4656117"),
    ("nn5_weekly", "nn5_weekly_dataset.tsf", "W-MON", 52, 8,
     "65a48ad6b186f723927ef8ecfe0a240d6645fe07fa07af64854755f5b1d4d81d", 215630, "4656125"),
    ("hospital", "hospital_dataset.tsf", "MS", 12, 12,
     "b84c2d28f5154958cb31229a8db1b79eaba9b2307b477c02475eee698ed176e1", 233355, "4656014"),
    # Known to the catalogue by path only (not pinned here): put the files under <root>/monash/.
    ("tourism_monthly", "tourism_monthly_dataset.tsf", "MS", 12, 24, None, None, "4656096"),
    ("tourism_quarterly", "tourism_quarterly_dataset.tsf", "QS", 4, 8, None, None, "4656093"),
    ("tourism_yearly", "tourism_yearly_dataset.tsf", "YS", 1, 4, None, None, "4656103"),
    ("m4_hourly", "m4_hourly_dataset.tsf", "h", 24, 48, None, None, "4656589"),
    ("m4_daily", "m4_daily_dataset.tsf", "D", 7, 14, None, None, "4656548"),
    ("m4_weekly", "m4_weekly_dataset.tsf", "W-SUN", 52, 13, None, None, "4656522"),
    ("m4_monthly", "m4_monthly_dataset.tsf", "MS", 12, 18, None, None, "4656480"),
    ("m4_quarterly", "m4_quarterly_dataset.tsf", "QS", 4, 8, None, None, "4656410"),
    ("m4_yearly", "m4_yearly_dataset.tsf", "YS", 1, 6, None, None, "4656379"),
]:
    _add(DatasetInfo(_name, _file, "monash", "tsf", _freq, None, (_digest,) if _digest else (), _bytes,
                     season=_season,
                     horizon=_h,
                     description=f"Monash archive .tsf (zip on {_MONASH_URL.format(_rec)})"))

_add(DatasetInfo("air_passengers", "AirPassengers.csv", "classic", "csv", "MS", None,
                 ("5f8b316b84545d9cfb05612298df8415ce4c44421c7012d109465564b07ebc06",), 1746,
                 "#Passengers", None, 12, description="Box & Jenkins monthly airline passengers"))


def dataset_info(name: str | DatasetInfo) -> DatasetInfo:
    """The catalogue entry for ``name`` (case-insensitive; aliases such as ``"ecl"`` work)."""
    if isinstance(name, DatasetInfo):
        return name
    key = str(name).strip()
    for info in CATALOGUE.values():
        if key.lower() == info.name.lower() or key.lower() in info.aliases:
            return info
    known = ", ".join(sorted(CATALOGUE))
    raise KeyError(f"unknown dataset {name!r}; the catalogue knows: {known}")


def cache_dir() -> Path:
    """The user cache directory where downloads go (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "titans-ts"


def data_roots(root: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The search path as ``(origin, directory)`` pairs, in lookup order."""
    roots: list[tuple[str, Path]] = []
    if root is not None:
        roots.append(("root argument", Path(root).expanduser()))
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append((f"${ENV_VAR}", Path(env).expanduser()))
    roots.append(("user cache", cache_dir()))
    return roots


def _candidates(info: DatasetInfo, directory: Path) -> list[Path]:
    out = []
    for sub in (directory / info.group, directory):
        for suffix in ("", ".gz"):
            out.append(sub / (info.filename + suffix))
    return out


#: digests computed in this process, by file identity and state: loaders that open the same file
#: again skip the re-read. The change time is part of the key (putting the modification time
#: back, as ``touch -d`` or ``os.utime`` do, moves it), and ``titans-ts data verify`` never uses
#: the cache (``rehash=True``).
_VERIFIED: dict[tuple, str] = {}


def sha256_of(path: str | os.PathLike, rehash: bool = False) -> str:
    """SHA-256 of a file's content; a ``.gz`` file is hashed after decompression. ``rehash``:
    read every byte again even if this process hashed the unchanged-looking file before."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _VERIFIED and not rehash:
        return _VERIFIED[key]
    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    with _readable(path), opener(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


@contextlib.contextmanager
def _readable(path: Path):
    """Turn a truncated or non-gzip ``.gz`` file into a :class:`ChecksumError` naming it."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ChecksumError(
            f"{path} is not a readable gzip file ({type(err).__name__}: {err or 'unexpected end'}); "
            f"it is truncated or corrupt: replace it (or give the uncompressed file)") from None


def _verify(info: DatasetInfo, path: Path, rehash: bool = False) -> None:
    if not info.sha256:
        return
    got = sha256_of(path, rehash=rehash)
    if got not in info.sha256:
        raise ChecksumError(
            f"{path} does not match the catalogue checksum of {info.filename}: expected sha256 "
            f"{' or '.join(info.sha256)}, got {got}. The file is corrupt or a different version; replace it "
            f"(`titans-ts data download {info.name}`"
            + ("" if info.url else ", or the source named in the catalogue")
            + ") or pass verify=False to use it anyway."
        )


def find_file(name: str | DatasetInfo, root: str | os.PathLike | None = None,
              verify: bool = True, rehash: bool = False) -> Path:
    """Locate a catalogue file on disk (no network), verifying its checksum (``rehash``: read the
    whole file again even if this process verified it before, as ``titans-ts data verify`` does).

    Raises:
        DataNotFoundError: naming the file, every place looked in, and how to get it.
        ChecksumError: if the file exists but its SHA-256 differs from the catalogue's.
    """
    info = dataset_info(name) if not isinstance(name, DatasetInfo) else name
    looked: list[str] = []
    for origin, directory in data_roots(root):
        for cand in _candidates(info, directory):
            looked.append(f"{cand} ({origin})")
            if cand.is_file():
                if verify:
                    _verify(info, cand, rehash=rehash)
                return cand
    if info.url:
        how = f"run `titans-ts data download {info.name}` (fetches {info.url} into {cache_dir()})"
    else:
        how = (f"get {info.filename} from its source ({info.description}) and put it under "
               f"<root>/{info.group}/")
    raise DataNotFoundError(
        f"dataset file {info.filename} (plain or .gz) for {info.name!r} was not found. Looked in:\n  "
        + "\n  ".join(looked)
        + f"\nTo get it: {how}, or point ${ENV_VAR} (or root=) at a folder that holds it."
    )


def open_text(path: str | os.PathLike):
    """Open a plain or ``.gz`` text file (UTF-8, falling back to Latin-1 byte-for-byte)."""
    path = Path(path)
    if path.suffix == ".gz":
        with _readable(path), gzip.open(path, "rb") as fh:
            raw = fh.read()
    else:
        raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # weather.csv's header carries Latin-1 unit symbols (W/m², µmol); keep them, lose nothing.
        text = raw.decode("latin-1")
    import io

    return io.StringIO(text)


def download(name: str, root: str | os.PathLike | None = None, force: bool = False,
             timeout: float = 60.0) -> Path:
    """Fetch a catalogue file from its canonical URL into ``root`` (default: the user cache).

    This is the only function in titans-ts that uses the network. The file is written to a
    temporary name, verified against the catalogue checksum when one is pinned, then moved in place.
    """
    info = dataset_info(name)
    if info.url is None:
        raise ValueError(
            f"{info.name} has no direct download address; get {info.filename} from "
            f"{info.description} and put it under <root>/{info.group}/"
        )
    target_dir = (Path(root).expanduser() if root is not None else cache_dir()) / info.group
    target = target_dir / info.filename
    if target.is_file() and not force:
        _verify(info, target)
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target_dir, prefix=f".{info.filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(info.url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the rename makes them the file
        tmp = Path(tmp_name)
        if info.sha256:
            got = sha256_of(tmp)
            if got not in info.sha256:
                raise ChecksumError(
                    f"downloaded {info.url} but its sha256 is {got}, not the catalogue's "
                    f"{info.sha256[0]}; nothing was written to {target}"
                )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
