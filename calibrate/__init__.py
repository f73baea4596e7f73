"""Calibration: import kernel measurements (aiconfigurator-core or a user CSV), fit
piecewise-linear surrogates and write `cost_tables/`. Not imported at solve time."""
