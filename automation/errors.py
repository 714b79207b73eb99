"""Error codes of the runtime."""

from __future__ import annotations

from config.errors import DomainError


class RunStateError(DomainError):
    """The run is not in a state that allows the operation (e.g. resuming a completed run)."""

    code = "INVALID_RUN_STATE"
    status = 409


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"
    status = 422
    default_message = "This Idempotency-Key was already used with a different request body."
