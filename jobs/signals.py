"""Clean stops on SIGTERM / SIGINT for the long-running commands."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType


@contextlib.contextmanager
def stop_on_signals(on_stop: Callable[[], None]) -> Iterator[None]:
    """Turn the first SIGTERM / SIGINT into ``on_stop()``; a second one acts as usual.

    Args:
        on_stop: Called from the signal handler (keep it to setting a flag).

    Yields:
        Nothing; handlers are restored on exit. Off the main thread it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _handler(signum: int, frame: FrameType | None) -> None:
        on_stop()
        signal.signal(signum, previous[signal.Signals(signum)])

    for sig in previous:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
