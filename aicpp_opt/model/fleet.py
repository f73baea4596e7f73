"""Fleet throughput with prefill and decode balanced: requests/s in = requests/s out.

The fleet runs at the arrival rate lambda = min(decode capacity, prefill capacity): decode
replicas full at their batch, unless prefill cannot feed them. At lambda equal to the prefill
capacity the prefill queue is saturated (infinite TTFT), which the evaluator flags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flow:
    """Request rates (1/s) and output token rates (tokens/s)."""

    arrival_rate: float
    prefill_rate: float
    decode_rate: float
    prefill_capacity: float
    decode_capacity: float
    output_tps: float
    output_tps_per_gpu: float
    output_tps_per_user: float

    @property
    def prefill_utilization(self) -> float:
        return self.arrival_rate / self.prefill_capacity if self.prefill_capacity else float("inf")

    def to_dict(self) -> dict:
        return {
            "arrival_rps": self.arrival_rate,
            "prefill_rps": self.prefill_rate,
            "decode_rps": self.decode_rate,
            "prefill_capacity_rps": self.prefill_capacity,
            "decode_capacity_rps": self.decode_capacity,
            "prefill_utilization": self.prefill_utilization,
            "output_tps": self.output_tps,
            "output_tps_per_gpu": self.output_tps_per_gpu,
            "output_tps_per_user": self.output_tps_per_user,
        }


def decode_capacity(replicas: int, seqs_per_replica: float, osl: float, tpot: float) -> float:
    """Requests/s that decode replicas finish when full: sequences / (OSL x TPOT)."""
    return replicas * seqs_per_replica / (osl * tpot)


def balance(prefill_capacity: float, decode_cap: float, osl: float, tpot: float, gpus: int) -> Flow:
    """The balanced flow: every request prefilled is decoded, at the slower side's rate."""
    rate = min(prefill_capacity, decode_cap)
    tps = rate * osl
    return Flow(rate, rate, rate, prefill_capacity, decode_cap, tps, tps / gpus, 1.0 / tpot)
