"""Failure handling: capped exponential backoff with jitter, and a gate that gives up.

Every SQS call and every bronze write goes through :class:`FailureGate`. A
failure is counted by kind and answered with a backoff delay; a run of
``max_consecutive_errors`` failures of one operation (or one error that retrying
cannot fix, such as a queue that does not exist) becomes a :class:`BridgeError`
naming the endpoint, the queue and the last error.
"""

from __future__ import annotations

import errno
import logging
import random
import threading
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from jobs.bridge.metrics import BridgeMetrics

log = logging.getLogger(__name__)

#: Exceptions the bridge treats as failures of a call (anything else is a bug).
CALL_ERRORS: tuple[type[BaseException], ...] = (ClientError, BotoCoreError, OSError)

#: Error codes that no amount of retrying fixes.
PERMANENT_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAddress",
        "InvalidSecurity",
        "NoSuchBucket",
    }
)


class BridgeError(RuntimeError):
    """The bridge gave up: SQS or the bronze store kept failing. Nothing was lost."""


class PartialBatchError(RuntimeError):
    """Some entries of a batch request failed with a retryable (server-side) error."""

    def __init__(self, operation: str, codes: list[str]) -> None:
        self.code = codes[0] if codes else "Unknown"
        super().__init__(f"{operation}: {len(codes)} entries failed ({', '.join(sorted(set(codes)))})")


def error_code(exc: BaseException) -> str:
    """A short, stable name for a failure: the AWS error code or the class name.

    Args:
        exc: The failure.

    Returns:
        E.g. ``ThrottlingException``, ``EndpointConnectionError``, or ``ENOSPC`` for an
        ``OSError`` that carries an errno (a full disk under the bronze store).
    """
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    if isinstance(exc, PartialBatchError):
        return exc.code
    if isinstance(exc, OSError) and not isinstance(exc, BotoCoreError):
        name = errno.errorcode.get(exc.errno) if isinstance(exc.errno, int) else None
        if name:
            return name
    return type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between attempts and when to give up.

    Attributes:
        max_consecutive_errors: Consecutive failures of one operation before giving up.
        base_seconds: The first backoff.
        cap_seconds: The longest backoff.
    """

    max_consecutive_errors: int = 10
    base_seconds: float = 0.2
    cap_seconds: float = 20.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Backoff before retry ``attempt`` (1-based): exponential, capped, equal jitter.

        Args:
            attempt: How many consecutive failures so far.
            rng: Source of jitter.

        Returns:
            Seconds to wait, between half and all of ``min(cap, base * 2**(attempt-1))``.
        """
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt - 1, 30))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class FailureGate:
    """Counts consecutive failures per operation; the first fatal one sticks."""

    def __init__(
        self, policy: RetryPolicy, metrics: BridgeMetrics, where: str, *, store: str | None = None
    ) -> None:
        """Create the gate.

        Args:
            policy: Backoff and give-up rule.
            metrics: Where failures are counted.
            where: Names the endpoint and queue in error messages.
            store: Names the bronze store in messages about the ``land`` operation.
        """
        self._policy = policy
        self._metrics = metrics
        self._where = where
        self._store = store
        self._lock = threading.Lock()
        self._streaks: dict[str, int] = {}
        self._rng = random.Random()
        self.fatal: BridgeError | None = None
        self.aborted = threading.Event()

    def abort(self, error: BridgeError) -> None:
        """Give up with ``error`` (unless an earlier fatal error is already recorded).

        Args:
            error: The error :meth:`raise_if_failed` will raise.
        """
        with self._lock:
            if self.fatal is None:
                self.fatal = error
        self.aborted.set()

    def raise_if_failed(self) -> None:
        """Raise the fatal error, if there is one.

        Raises:
            BridgeError: The bridge gave up.
        """
        if self.fatal is not None:
            raise self.fatal

    def backoff(self, operation: str, exc: BaseException) -> None:
        """Count a failure and sleep before the retry.

        Args:
            operation: The operation that failed.
            exc: The failure.

        Raises:
            BridgeError: Giving up (now, or another thread gave up while sleeping).
        """
        delay = self.failure(operation, exc)
        if delay is None or self.aborted.wait(delay):
            self.aborted.set()
            raise self.fatal or BridgeError(f"SQS bridge stopped ({self._where})")

    def success(self, operation: str) -> None:
        """Reset the operation's streak.

        Args:
            operation: E.g. ``receive``, ``delete``, ``land``, ``visibility``.
        """
        with self._lock:
            streak = self._streaks.get(operation, 0)
            self._streaks[operation] = 0
        if streak > 1:
            log.info(
                "bridge: %s works again after %d failed attempt(s) (%s)",
                operation,
                streak,
                self._place(operation),
            )

    def _place(self, operation: str) -> str:
        """What an operation talks to, for messages: the bronze store for ``land``, else SQS."""
        if operation == "land" and self._store:
            return f"bronze store {self._store}; {self._where}"
        return self._where

    def failure(self, operation: str, exc: BaseException) -> float | None:
        """Count a failure and decide what to do.

        Args:
            operation: The operation that failed.
            exc: The failure.

        Returns:
            Seconds to back off before retrying, or ``None`` when the bridge must give
            up (then :attr:`fatal` holds the error to raise).
        """
        code = error_code(exc)
        self._metrics.error(f"{operation}.{code}")
        with self._lock:
            streak = self._streaks.get(operation, 0) + 1
            self._streaks[operation] = streak
            permanent = code in PERMANENT_CODES or isinstance(exc, NoCredentialsError)
            limit = self._policy.max_consecutive_errors
            if self.fatal is None and (permanent or streak >= limit):
                reason = "a permanent error" if permanent else f"{streak} consecutive failures"
                self.fatal = BridgeError(
                    f"SQS bridge gave up on {operation} after {reason} ({self._place(operation)}); "
                    f"last error: {code}: {exc}"
                )
            delay = self._policy.delay(streak, self._rng) if self.fatal is None else None
        if delay is not None and streak & (streak - 1) == 0:  # the 1st, 2nd, 4th, 8th ... of a streak
            log.log(
                logging.WARNING if streak > 1 else logging.INFO,
                "bridge: %s failed (%s: %s), attempt %d of %d, retrying in %.1f s (%s)",
                operation, code, exc, streak, limit, delay, self._place(operation),
            )  # fmt: skip
        if delay is not None:
            return delay
        self.aborted.set()
        return None
