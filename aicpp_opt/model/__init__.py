"""The op model: one description of a forward pass (typed ops in blocks of layers), the
schedules that time it (plain, two-batch overlap, AFD pipeline, prefill, chunked prefill), the
routing model, memory and queueing. Everything a plan's numbers are computed from."""
