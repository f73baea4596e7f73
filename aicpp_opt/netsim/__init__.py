"""The built-in network simulator: multi-dimensional topologies and multi-pool fabrics, op
graphs of compute, transfers and collectives, and a congestion-aware flow-level simulation of
them. It depends on nothing else in the package, so the cost layer can price unmeasured
communication patterns with it and the replay can run whole plans on it."""
