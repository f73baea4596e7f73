"""Replay a plan's traffic on a network: real plans to the simulator's input (``adapter``),
op graphs per GPU (``expand``), the network of one pool or several (``topology``,
``fabric``), the built-in flow-level simulator (``simulate``, ``run.replay``), Chakra traces
and the AstraSim runner (``chakra``, ``astra``), comm sweeps for the cost tables
(``comm_sweep``), the Gantt chart (``timeline``) and predicted against replayed numbers
(``verify``)."""
