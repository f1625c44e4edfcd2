"""pd-scaler: a KEDA external scaler for prefill/decode disaggregated LLM serving."""

import os

# grpc-core logs with absl straight to stderr (e.g. a line per failed TLS handshake), outside Python's logging: its
# lines can be neither JSON nor rate-limited, and grpcio reads this only once, at import. Whatever matters reaches
# Python as an exception. GRPC_VERBOSITY=ERROR (or INFO) in the environment shows them again, as plain text.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from scaler.engine import Engine, Ref
from scaler.observations import ConsumerLag, Decision
from scaler.triggers import TriggerSpec, parse

__all__ = ["ConsumerLag", "Decision", "Engine", "Ref", "TriggerSpec", "parse"]
