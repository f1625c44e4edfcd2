"""The prompt tokens of a JetStream consumer's backlog, read from the messages themselves.

The backlog is the messages after the consumer's ack floor: those delivered and not yet acknowledged (up to its
delivered sequence) and the first `num_pending` stored after it. Each is read once, by stream sequence, with
JetStream's get-message (`next_by_subj`, so deleted sequences and other subjects are skipped), and its prompt
tokens are kept until the ack floor passes it. Reads are bounded per refresh (messages and bytes) and in total
(messages remembered), and in time; what is left unread counts at the mean of what was read, and the note says so.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from scaler.sources.history import MAX_PAYLOAD, prompt_tokens

MAX_READS = 256  # messages read per refresh (one get is one round trip)
MAX_READ_BYTES = 8 << 20  # payload bytes read per refresh
MAX_READ_SECONDS = 1.0  # time spent reading per refresh: a slow server delays the lag no more than this
MAX_TRACKED = 1 << 14  # messages whose prompt tokens are remembered; a longer backlog's tail counts at the mean

# One get: the first stored message at or after a sequence, as (sequence, payload); None past the last one.
Get = Callable[[int], Awaitable[tuple[int, bytes] | None]]


class Unread(Exception):
    """None of the backlog's messages could be read: its tokens are unknown."""


@dataclass(frozen=True)
class BacklogTokens:
    tokens: float
    note: str  # where the count is not exact, how it was reckoned ("" when exact)


class BacklogReader:
    def __init__(
        self,
        field: str,
        mean_prompt_tokens: float,
        max_reads: int = MAX_READS,
        max_bytes: int = MAX_READ_BYTES,
        max_tracked: int = MAX_TRACKED,
        max_seconds: float = MAX_READ_SECONDS,
    ) -> None:
        self.field, self.mean = field, mean_prompt_tokens
        self.max_reads, self.max_bytes, self.max_tracked = max_reads, max_bytes, max_tracked
        self.max_seconds = max_seconds
        # The messages read after the floor, ascending by sequence, in parallel arrays (17 bytes a message): bisect
        # finds a sequence and the sums run over slices, so a refresh runs no Python loop over a long backlog.
        self._seqs = array("q")
        self._tokens = array("d")  # prompt tokens, meanPromptTokens where not countable
        self._uncountable = array("b")
        self._read_upto = 0  # every message after the floor up to here was read (and is listed unless gone since)
        self._floor = 0

    async def count(self, floor: int, delivered: int, ack_pending: int, pending: int, get: Get) -> BacklogTokens:
        """The prompt tokens of the `ack_pending` delivered messages after `floor` and the `pending` ones after
        `delivered`. A failed get raises; Unread if none of them could be read."""
        if floor < self._floor:  # the consumer or the stream was made anew: its sequences are other messages
            self._replace(len(self._seqs), [], [])
            self._read_upto = 0
        self._floor = floor
        self._replace(bisect.bisect_right(self._seqs, floor), [], [])
        self._read_upto = max(self._read_upto, floor)
        budget = _Budget(self.max_reads, self.max_bytes, time.monotonic() + self.max_seconds)

        if self._read_upto >= delivered and bisect.bisect_right(self._seqs, delivered) != ack_pending:
            await self._reread_delivered(floor, delivered, budget, get)
        have = len(self._seqs) - bisect.bisect_right(self._seqs, delivered)
        if have < pending or self._read_upto < delivered:
            async for seq, tokens in self._walk(self._read_upto + 1, budget, get):
                self._seqs.append(seq)
                self._tokens.append(self.mean if tokens is None else float(tokens))
                self._uncountable.append(tokens is None)
                self._read_upto = seq
                have += seq > delivered
                if (have >= pending and seq >= delivered) or len(self._seqs) >= self.max_tracked:
                    break
        return self._reckon(delivered, ack_pending, pending)

    async def _reread_delivered(self, floor: int, delivered: int, budget: _Budget, get: Get) -> None:
        # Some were acknowledged out of order since they were read (a work queue deletes them): read the delivered
        # ones again, so that those gone drop out; the rest stay as read.
        seqs: list[int] = []
        tokens: list[int | None] = []
        checked = floor
        async for seq, count in self._walk(floor + 1, budget, get):
            if seq > delivered:
                checked = delivered
                break
            seqs.append(seq)
            tokens.append(count)
            checked = seq
        else:
            if budget.left():  # the stream ends before `delivered`
                checked = delivered
        self._replace(bisect.bisect_right(self._seqs, checked), seqs, tokens)

    def _replace(self, end: int, seqs: list[int], tokens: list[int | None]) -> None:
        """The listed messages up to index `end` become `seqs` with their `tokens`."""
        self._seqs[:end] = array("q", seqs)
        self._tokens[:end] = array("d", [self.mean if t is None else float(t) for t in tokens])
        self._uncountable[:end] = array("b", [t is None for t in tokens])

    async def _walk(self, start: int, budget: _Budget, get: Get) -> AsyncIterator[tuple[int, int | None]]:
        seq = start
        while budget.left():
            got = await get(seq)
            if got is None:
                return
            found, payload = got
            budget.spend(len(payload))
            yield found, prompt_tokens(payload, self.field)
            seq = found + 1

    def _reckon(self, delivered: int, ack_pending: int, pending: int) -> BacklogTokens:
        head = bisect.bisect_right(self._seqs, delivered)
        end = min(len(self._seqs), head + pending)
        notes: list[str] = []
        uncountable = self._uncountable[:end].count(1)
        if uncountable:
            notes.append(
                f"{uncountable} without {self.field} (or over {MAX_PAYLOAD >> 20} MiB) at meanPromptTokens "
                f"{self.mean:g}"
            )
        tokens, counted = sum(self._tokens[:head]), head
        if head > ack_pending:
            # Acknowledged out of order and still stored (limits retention): which ones is not told, so the
            # delivered ones count at their mean.
            notes.append(f"{head - ack_pending} of {head} delivered were acknowledged out of order")
            tokens, counted = tokens / head * ack_pending, ack_pending
        tokens += sum(self._tokens[head:end])
        counted += end - head
        total = ack_pending + pending
        unread = total - counted
        if unread > 0:
            if not counted:
                raise Unread(f"none of the {total} messages could be read (acknowledged meanwhile?)")
            tokens += unread * tokens / counted
            notes.append(f"{unread} of {total} messages not read yet, at the mean of the {counted} read")
        return BacklogTokens(tokens, "; ".join(notes))


class _Budget:
    def __init__(self, reads: int, size: int, until: float) -> None:
        self.reads, self.size, self.until = reads, size, until

    def left(self) -> bool:
        return self.reads > 0 and self.size > 0 and time.monotonic() < self.until

    def spend(self, size: int) -> None:
        self.reads -= 1
        self.size -= size
