"""Data: tables (CSV, npz, table folders) read, checked and written; the generators of
`seqtool gen`; splits, scaling, differencing and time features; a table as a model sees it.
Nothing here needs torch at import time, and nothing imports the model, training or forecasts."""
