"""Replay a plan on a network: the plan's forwards from the op model to the simulator's graph
(``build``, ``adapter``), the built-in flow-level simulator (``aicpp_opt.netsim``), Chakra
traces and a user's AstraSim binary (``chakra``, ``astra``), timelines (``timeline``)."""
