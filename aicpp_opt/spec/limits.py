"""Size limits of what the tool accepts, with why. Each is generous for real fleets and models
(the shipped 1,152-GPU fleet and the largest published MoE models sit far inside them) and keeps
every command bounded: beyond them the search would not finish, or a number is not a fleet or a
model but a typo. Every limit is checked where the file is read, and the message names it."""

MAX_GPUS = 16384
"""GPUs in an instance, all pools together (16 x the shipped 1,152-GPU fleet)."""
MAX_POOLS = 8
"""GPU pools of an instance: AFD shapes pair every pool with every other."""
MAX_TOPOLOGY_DIMS = 4
"""Interconnect levels of a pool (NVLink, then up to three scale-out tiers)."""
MAX_WORKLOADS = 32
"""Workloads of an instance: ``compare`` solves each at every SLO tier and mode."""
MAX_TP = 128
"""Largest TP degree (the most attention heads of a shipped model); TP values are powers of
two, as every measured table's."""
MAX_EP = 1024
"""Largest EP degree searched (above every model's expert count)."""
MAX_MICRO_BATCHES = 16
"""More micro-batches than this split a step into slivers no engine runs."""
MAX_MTP_DRAFT_TOKENS = 8
"""Draft tokens per decode step beyond which no engine's speculative decoding is configured."""
MAX_BATCH_PER_GPU = 4096
"""Decode sequences per GPU (the search grid stops at 512)."""
MAX_TOKENS = 10_000_000
"""Prompt or output length, chunk or prefill budget in tokens (10M-token contexts)."""
MAX_SLO_MS = 3_600_000.0
"""Largest TTFT / TPOT target: one hour."""
MAX_BW_GBPS = 100_000.0
"""Per-GPU link bandwidth in GB/s (100 TB/s, far above any link)."""
MAX_LATENCY_NS = 1e9
"""Per-hop link latency: one second."""
MAX_COST_PER_GPU_HOUR = 10_000.0
MAX_MIX_SHARE = 1e6
"""A workload's traffic share (shares are relative; a million to one is already a typo)."""
MAX_CV = 10.0
"""Coefficient of variation of a length distribution."""
MAX_ROLES = 256
"""Roles of a plan (every workload's prefill and decode families side by side)."""
MAX_RATE = 1e7
"""Requests/s of a plan role or route (far above any fleet's)."""
MAX_REPLICA_GPUS = 4096
"""GPUs of one replica of a plan role (the replay expands replica 0 GPU by GPU)."""

# Model architecture (model files and Hugging Face configs).
MAX_LAYERS = 1024
MAX_HIDDEN = 65536
MAX_HEADS = 1024
MAX_HEAD_DIM = 4096
MAX_EXPERTS = 4096
MAX_FFN = 1_048_576
MAX_VOCAB = 10_000_000
MAX_NAME = 100
"""Characters of a name (model, pool, workload, role id)."""
