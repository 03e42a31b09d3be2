"""Reproducing the published findings about batch normalization (`bnexp reproduce`).

A finding is data (bnexp/reproduce/findings/README.md): an experiment config (its sweep,
configs/experiment/) and a claim declaration (findings/NAME.yaml), written before its runs. For
each finding bnexp runs the experiment (a `bnexp run -m` sweep in a subprocess, or an in-process
measurement), reads the runs into tidy tables, judges every claim and draws the paper-style
figures, then writes DIR/NAME/REPORT.md and claims.csv.

    cli            the command line and the loop over findings
    options        what the command asks for
    findings/      the declarations and their loader
    claims         the claim measures (pure) and verdicts
    overrides      a finding's scale overrides merged with the user's, checked
    sweeps         the subprocess sweep runner
    procedures     in-process measurements (running-stats, scale-invariance); torch
    bn_math        batch normalization written out by hand, and its identity checks; torch
    reproducer     one finding: runs, tables, verdicts, figures, files
    finding_figures the figures of each finding, drawn like the papers' own
    report         the Markdown reports

Depends on bnexp.run (to train) and bnexp.analysis (to read runs and draw); neither depends on
it. Importing this package imports nothing: take the module you need.
"""
