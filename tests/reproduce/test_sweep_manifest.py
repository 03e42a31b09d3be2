"""A sweep made elsewhere and copied here (another machine, another --out) still reads."""

from __future__ import annotations

import json

from bnexp.reproduce.sweeps import MANIFEST, load_manifest


def test_jobs_recorded_under_another_path_are_found_by_name(tmp_path):
    sweep = tmp_path / "runs" / "fig1" / "paper-abc"
    for name in ("norm=batch,seed=0", "norm=none,seed=0"):
        (sweep / name).mkdir(parents=True)
    recorded = [
        f"/elsewhere/out/runs/fig1/paper-abc/{n}"
        for n in ("norm=batch,seed=0", "norm=none,seed=0", "gone")
    ]
    (sweep / MANIFEST).write_text(
        json.dumps({"jobs": recorded, "command": "bnexp run -m x=1", "seconds": 3})
    )
    found = load_manifest(sweep)
    assert [p.name for p in found.jobs] == ["norm=batch,seed=0", "norm=none,seed=0"]
    assert all(p.parent == sweep for p in found.jobs)


def test_jobs_at_their_recorded_path_are_kept(tmp_path):
    sweep = tmp_path / "s"
    job = tmp_path / "other" / "job0"
    job.mkdir(parents=True)
    sweep.mkdir()
    (sweep / MANIFEST).write_text(json.dumps({"jobs": [str(job)]}))
    assert load_manifest(sweep).jobs == [job]


def test_report_names_a_copied_sweep_by_the_out_folder_not_where_it_was_made(tmp_path):
    # Runs made under /tmp/elsewhere and copied into results/paper/runs: the report's command
    # must name the folder the reader has, written as the user wrote --out.
    from bnexp.reproduce.options import Options
    from bnexp.reproduce.reproducer import shown_sweep_args

    out = tmp_path / "results" / "paper"
    options = Options(names=["x"], out=out, out_text="results/paper")
    recorded = ["run", "-m", "hydra.sweep.dir=/tmp/elsewhere/runs/x/paper", "experiment=x"]
    shown = shown_sweep_args(recorded, out / "runs" / "x" / "paper", options)
    assert shown == ["run", "-m", "hydra.sweep.dir=results/paper/runs/x/paper", "experiment=x"]
    assert recorded[2].endswith("/tmp/elsewhere/runs/x/paper")  # the manifest is not rewritten
