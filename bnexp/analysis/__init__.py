"""Reading runs and drawing them: never imports torch, so that figures of runs made elsewhere (a
cluster, another machine) need only pandas and matplotlib.

    Modules, from the bottom up:
    style, intervals       the one look of every figure; Student-t intervals over seeds
    draw, captions         drawing and caption helpers shared by every figure
    tables                 many runs -> tidy tables (one row per run; all CSV rows)
    variants               what varies across a sweep: variants, facets, seed statistics
    run_plots              one run's own figures (<run dir>/plots/, plots=true)
    sweep_plots            the figures comparing a sweep's variants
    sweep_figures          `bnexp figures`: the output folder, runs.csv, index.md, the command

Reading a run directory is bnexp.rundir's (shared with the training side); the finding figures
of `bnexp reproduce` live in bnexp.reproduce.finding_figures and use this package's helpers.
Importing this package imports nothing: take the module you need.
"""
