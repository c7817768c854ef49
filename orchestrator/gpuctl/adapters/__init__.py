"""Adapters: the only modules that import cloud SDKs, Fabric or Pulumi's automation API."""
