"""A VM's life: up (with zone failover), status, ssh, extend, down, sweep.

Intent is written to a record under the gpuctl home before anything is created, so an `up`
that is interrupted can always be finished or rolled back; the record is removed only after
the API confirms that nothing labelled for the VM is left.
"""
