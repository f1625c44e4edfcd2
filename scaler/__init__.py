"""pd-scaler: a KEDA external scaler for prefill/decode disaggregated LLM serving."""

from scaler.engine import Engine, Ref
from scaler.observations import ConsumerLag, Decision
from scaler.triggers import TriggerSpec, parse

__all__ = ["ConsumerLag", "Decision", "Engine", "Ref", "TriggerSpec", "parse"]
