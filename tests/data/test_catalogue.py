"""Catalogue lookup order, checksums, error messages, and the explicit-only download."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from titans_ts import datasets as D
from titans_ts.datasets import catalogue as C


def _fake(tmp_path, content=b"date,a,OT\n2020-01-01,1,2\n"):
    info = replace(D.dataset_info("ETTh1"), name="fake_set", filename="fake.csv",
                   sha256=(hashlib.sha256(content).hexdigest(),), url=None)
    return info, content


def test_catalogue_has_the_benchmarks():
    for name in ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "electricity", "traffic",
                 "exchange_rate", "national_illness", "m1_monthly", "m3_monthly", "nn5_daily",
                 "hospital", "tourism_monthly", "m4_monthly"]:
        info = D.dataset_info(name)
        assert info.freq or info.name == "m3_other"
    for name in ["ETTh1", "ETTm2", "weather", "electricity", "traffic", "exchange_rate",
                 "national_illness"]:
        info = D.dataset_info(name)
        assert info.url and info.url.startswith("https://")
        assert info.sha256 and all(len(s) == 64 for s in info.sha256)
        assert info.target == "OT" and info.split
    assert D.dataset_info("ecl").name == "electricity"
    with pytest.raises(KeyError, match="catalogue knows"):
        D.dataset_info("no_such_set")


def test_lookup_order_root_then_env_then_cache(tmp_path, monkeypatch):
    info, content = _fake(tmp_path)
    a, b, cache = tmp_path / "a", tmp_path / "b", C.cache_dir()
    for d in (a / "ltsf", b, cache / "ltsf"):
        d.mkdir(parents=True)
        (d / "fake.csv").write_bytes(content)
    monkeypatch.setenv("TITANS_TS_DATA", str(b))
    assert D.find_file(info, root=a) == a / "ltsf" / "fake.csv"
    assert D.find_file(info) == b / "fake.csv"
    monkeypatch.delenv("TITANS_TS_DATA")
    assert D.find_file(info) == cache / "ltsf" / "fake.csv"


def test_gz_copy_verifies_against_uncompressed_checksum(tmp_path):
    info, content = _fake(tmp_path)
    (tmp_path / "ltsf").mkdir()
    with gzip.open(tmp_path / "ltsf" / "fake.csv.gz", "wb") as fh:
        fh.write(content)
    assert D.find_file(info, root=tmp_path).name == "fake.csv.gz"


def test_checksum_mismatch_names_file_and_hashes(tmp_path):
    info, content = _fake(tmp_path)
    (tmp_path / "fake.csv").write_bytes(content + b"2020-01-02,3,4\n")
    with pytest.raises(D.ChecksumError) as exc:
        D.find_file(info, root=tmp_path)
    msg = str(exc.value)
    assert "fake.csv" in msg and info.sha256[0] in msg and "verify=False" in msg
    assert D.find_file(info, root=tmp_path, verify=False).name == "fake.csv"


def test_missing_file_says_which_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TITANS_TS_DATA", str(tmp_path / "env"))
    with pytest.raises(D.DataNotFoundError) as exc:
        D.find_file("ETTh1", root=tmp_path / "mine")
    msg = str(exc.value)
    assert "ETTh1.csv" in msg
    assert str(tmp_path / "mine") in msg and str(tmp_path / "env") in msg and str(C.cache_dir()) in msg
    assert "titans-ts data download ETTh1" in msg


def test_real_files_verify(data_root):
    for name in ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "national_illness", "m3_monthly",
                 "m1_monthly", "hospital", "nn5_daily", "air_passengers"]:
        assert D.find_file(name, root=data_root).is_file()


@pytest.mark.slow
def test_no_network_at_import_or_load(data_root, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    D.ltsf_splits("ETTh1", 96, 96, root=data_root)
    code = ("import urllib.request, socket\n"
            "def boom(*a, **k): raise SystemExit('network used')\n"
            "urllib.request.urlopen = boom; socket.socket.connect = boom\n"
            "import titans_ts, titans_ts.datasets, titans_ts.kernels, titans_ts.metrics\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout


def test_download_is_explicit_and_verified(tmp_path, monkeypatch):
    src = tmp_path / "src.csv"
    content = b"date,OT\n2020-01-01,1\n"
    src.write_bytes(content)
    info = replace(D.dataset_info("ETTh1"), name="fake_dl", filename="fake_dl.csv",
                   url=src.as_uri(), sha256=(hashlib.sha256(content).hexdigest(),))
    monkeypatch.setitem(C.CATALOGUE, "fake_dl", info)
    path = D.download("fake_dl", root=tmp_path / "dl")
    assert path.read_bytes() == content and path.parent.name == "ltsf"
    bad = replace(info, name="fake_bad", filename="fake_bad.csv", sha256=("0" * 64,))
    monkeypatch.setitem(C.CATALOGUE, "fake_bad", bad)
    with pytest.raises(D.ChecksumError, match="nothing was written"):
        D.download("fake_bad", root=tmp_path / "dl")
    assert not (tmp_path / "dl" / "ltsf" / "fake_bad.csv").exists()
    assert not list((tmp_path / "dl" / "ltsf").glob("*.part"))


def test_cli_data_list_and_verify(data_root, tmp_path, monkeypatch, capsys):
    from titans_ts.cli import main

    monkeypatch.delenv("TITANS_TS_DATA", raising=False)  # only --root and the (empty) cache
    assert main(["data", "--root", str(data_root), "verify", "ETTh1", "m3_monthly"]) == 0
    out = capsys.readouterr().out
    assert "ETTh1" in out and "m3_monthly" in out and "MISMATCH" not in out and "missing" not in out

    assert main(["data", "--root", str(data_root), "list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    etth1 = rows["ETTh1"]
    assert etth1[3] == "yes", etth1
    assert Path(etth1[4]).is_file() and Path(etth1[4]).is_relative_to(data_root), etth1
    # electricity is in the catalogue but not in the data folder
    assert "electricity" in C.CATALOGUE and not list(data_root.rglob("electricity*"))
    assert rows["electricity"][3] == "no", rows["electricity"]
    assert rows["electricity"][4] == C.CATALOGUE["electricity"].filename

    # a corrupted copy: verify fails and says MISMATCH
    info, content = _fake(tmp_path)
    monkeypatch.setitem(C.CATALOGUE, info.name, info)
    bad_root = tmp_path / "bad"
    bad_root.mkdir()
    (bad_root / info.filename).write_bytes(content + b"2020-01-02,3,4\n")
    assert main(["data", "--root", str(bad_root), "verify", info.name]) == 1
    out = capsys.readouterr().out
    assert info.name in out and "MISMATCH" in out
    # the intact copy passes
    (bad_root / info.filename).write_bytes(content)
    assert main(["data", "--root", str(bad_root), "verify", info.name]) == 0
    assert "MISMATCH" not in capsys.readouterr().out

    # a named set that is not found anywhere fails too
    assert main(["data", "--root", str(data_root), "verify", "ETTh1", "electricity"]) == 1
    out = capsys.readouterr().out
    assert "electricity" in out and "missing" in out


def test_verify_reports_every_bad_file_and_goes_on(tmp_path, monkeypatch, capsys):
    """A truncated and a non-gzip .gz are each reported (CORRUPT) and the files after them are
    still checked; loaders get a ChecksumError that names the file."""
    from titans_ts.cli import main

    monkeypatch.delenv("TITANS_TS_DATA", raising=False)
    content = b"date,a,OT\n" + b"".join(b"2020-01-%02d,1,2\n" % d for d in range(1, 29))
    sha = (hashlib.sha256(content).hexdigest(),)
    names = []
    for name, data in [("cut", gzip.compress(content)[:40]), ("notgz", content), ("good", gzip.compress(content))]:
        info = replace(D.dataset_info("ETTh1"), name=f"fake_{name}", filename=f"fake_{name}.csv", sha256=sha, url=None)
        monkeypatch.setitem(C.CATALOGUE, info.name, info)
        (tmp_path / f"fake_{name}.csv.gz").write_bytes(data)
        names.append(info.name)
    assert main(["data", "--root", str(tmp_path), "verify", *names]) == 1
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["fake_cut"].split()[1] == "CORRUPT" and "not a readable gzip file" in rows["fake_cut"]
    assert rows["fake_notgz"].split()[1] == "CORRUPT" and "fake_notgz.csv.gz" in rows["fake_notgz"]
    assert rows["fake_good"].split()[1] == "ok"
    with pytest.raises(D.ChecksumError, match=r"fake_cut.csv.gz is not a readable gzip file"):
        D.find_file("fake_cut", root=tmp_path)
    with pytest.raises(D.ChecksumError, match="truncated or corrupt"):
        C.open_text(tmp_path / "fake_cut.csv.gz")


def test_verify_rehashes_a_same_size_edit_whose_mtime_was_put_back(tmp_path, monkeypatch, capsys):
    """Issue 35: ``data verify`` must read every byte again, not trust a cached (size, mtime)."""
    from titans_ts.cli import main

    monkeypatch.delenv("TITANS_TS_DATA", raising=False)
    info, content = _fake(tmp_path)
    monkeypatch.setitem(C.CATALOGUE, info.name, info)
    root = tmp_path / "root"
    root.mkdir()
    path = root / info.filename
    path.write_bytes(content)
    assert main(["data", "--root", str(root), "verify", info.name]) == 0
    capsys.readouterr()
    st = path.stat()
    edited = bytearray(content)
    edited[-3] = ord("9") if edited[-3] != ord("9") else ord("8")  # one digit, same size
    path.write_bytes(bytes(edited))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime put back
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert main(["data", "--root", str(root), "verify", info.name]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    with pytest.raises(D.ChecksumError, match="does not match the catalogue checksum"):
        D.find_file(info.name, root=root)  # loaders too
