"""Workflow state beside the collection: risk policies, flags, review decisions (the audit), PDQ hashes and hash banks.

Relational, not vectors, so it lives in SQLite next to the Milvus database rather than in Milvus.
Milvus stays the system of record for which items exist: every reader here checks item ids
against the store before it reports them.
"""

from __future__ import annotations

from lookalike.workflow.db import (
    SYSTEM,
    Decision,
    Flag,
    FlagStatus,
    NewFlag,
    Policy,
    Subject,
    Workflow,
)

__all__ = ["SYSTEM", "Decision", "Flag", "FlagStatus", "NewFlag", "Policy", "Subject", "Workflow"]
