"""benchmarks/covariates.py: the report is current with its record, and its verdicts follow the
numbers (no training here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("covariates_benchmark", REPO / "benchmarks" / "covariates.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_report_is_rendered_from_the_record():
    mod = _module()
    rows = mod.read_results(REPO / mod.RESULTS)
    assert {r["part"] for r in rows} == {"nn5", "etth1", "warm"}
    assert (REPO / "docs/benchmarks/covariates.md").read_text() == mod.render(rows)


def test_verdicts_follow_the_numbers(tmp_path):
    mod = _module()
    common = {"host": "h", "date": "d", "command": "python benchmarks/covariates.py"}
    rows = [{"part": "warm", "model": "titans_forecaster", "setting": run, "seed": 0, "test_mse": mse,
             "seconds": secs, "cpu_s": secs, "epochs_run": 3, **common}
            for run, mse, secs in (("warm", 0.101, 4.0), ("scratch", 0.100, 10.0))]
    rows += [{"part": "nn5", "model": "titans_forecaster", "setting": s, "seed": 0, "MASE": m, "sMAPE": 20.0,
              "train_s": 1.0, "cpu_s": 1.0, "epochs_run": 2, "context_length": 112, **common}
             for s, m in (("none", 0.9), ("calendar", 0.95))]
    rows.append({**rows[-1], "MASE": 0.85})  # a rerun replaces the row of its key
    path = tmp_path / "covariates.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = mod.render(mod.read_results(path))
    assert "Continued training reaches the from-scratch MSE within 2 % in at most half its seconds" in text
    assert "TitansForecaster: calendar features lower the MASE (mean of 1 seeds: 0.8500 with, 0.9000 without" in text
    slow = [dict(r, seconds=6.0, cpu_s=6.0) if r["setting"] == "warm" else r for r in rows]
    path.write_text("".join(json.dumps(r) + "\n" for r in slow))
    assert "Continued training does not reach" in mod.render(mod.read_results(path))
