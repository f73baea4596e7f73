"""Replay a plan's traffic on a network: op graphs per GPU (``expand``), the built-in
flow-level simulator (``simulate``, ``run.replay``), Chakra traces and the AstraSim runner
(``chakra``, ``astra``), comm sweeps for the cost tables (``comm_sweep``), the Gantt chart
(``timeline``) and the solve -> replay -> correct loop (``verify``)."""
