"""``silverline dlq``: look at and redrive the dead-lettered messages of a tenant group's queue.

:mod:`jobs.dlq.queues` finds the dead-letter queue, :mod:`jobs.dlq.peek` shows its
messages without consuming them, :mod:`jobs.dlq.moves` moves them back to the
main queue (send first, delete after), :mod:`jobs.dlq.cli` wires the commands.
"""
