"""Sources: background loops that measure something and keep the latest sample (the only network I/O)."""

from scaler.sources.base import Clock, Source, SourcePool

__all__ = ["Clock", "Source", "SourcePool"]
