"""One training run: the config, the models and norms, the data, the training loop, the per-layer
statistics and the files a run writes. Uses torch; never imports bnexp.analysis or
bnexp.reproduce. Importing this package imports nothing: take the module you need."""
