"""`gpuctl run --recover`: a run that Google Cloud restarts after a preemption, with no laptop.

plan.py     the setup (RecoveringVm spec, worst case) the dry run shows and the apply path applies
bundle.py   what gpuctl uploads next to the run's checkpoints (spec, code, host helpers)
guards.py   the worst case across every replacement, and the deadline that deletes the group
deadline.py the group's Cloud Scheduler deadline job
apply.py    record, bucket, bundle, stack, deadline; rolled back on any failure
view.py     where it runs now, recreations, cost so far across replacements, worst case left
cancel.py   `gpuctl cancel`: the group, its template and its deadline job go; checkpoints stay
"""
