"""Fault drills under load (issue 10, part 5): each kills or restarts infrastructure on a private
stack and checks that every booking is decided, none is double-allocated or lost, and the quota
ledger balances. `python -m bench.faults` runs them all; `python -m bench.faults.<name>` one."""
