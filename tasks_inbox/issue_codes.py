"""Stable codes of the issues tasks_inbox's validators report (lifecycles, SLA configs,
task forms), beside the shared ``config.issues.IssueCode`` ones."""

from __future__ import annotations

from enum import StrEnum


class TaskIssueCode(StrEnum):
    UNKNOWN_STATE = "UNKNOWN_STATE"
    UNKNOWN_ACTION = "UNKNOWN_ACTION"
    UNKNOWN_QUEUE = "UNKNOWN_QUEUE"
    UNKNOWN_USER = "UNKNOWN_USER"
    INVALID_DURATION = "INVALID_DURATION"
