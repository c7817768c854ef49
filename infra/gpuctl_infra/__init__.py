"""gpuctl's Pulumi programs: functions of a typed spec, built from ComponentResources.

Nothing here reads config or environment: everything a program needs is in its spec.
"""
