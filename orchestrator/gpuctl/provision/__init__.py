"""Provisioning a GPU host over SSH: facts (command + pure parser) and idempotent steps.

A step reads the facts it needs when it runs (never earlier: a disk's UUID read before mkfs
is empty), returns the actions it would take or a no-op with a reason, and is applied by the
runner that owns the SSH connection. Re-running on a ready host changes nothing.
"""
