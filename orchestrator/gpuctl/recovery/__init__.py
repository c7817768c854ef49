"""`gpuctl run --recover`: a run that Google Cloud restarts after a preemption, with no laptop.

bundle.py   what gpuctl uploads next to the run's checkpoints (spec, code, host helpers)
guards.py   the worst case across every replacement, and the deadline that deletes the group
"""
