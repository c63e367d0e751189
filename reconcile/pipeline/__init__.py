"""One run end to end, in the order of the README's "How a run works".

`session.py` opens what a run needs; `read.py` builds the universe and reads both sides
(a part at a time through `parts.py`); `run.py` plans, applies and verifies; `saved.py`
applies a saved plan (`reconcile apply PLAN`); `recorder.py` records the run; `lock.py`
and `holder.py` keep two runs of one job apart; `interrupts.py` and `crashpoints.py`
handle signals and test crashes; `doctor.py` checks a deployment.
"""

from reconcile.pipeline.run import Planned, apply_planned, make_plan, plan_only, verify
from reconcile.pipeline.job import run_job
from reconcile.pipeline.saved import apply_saved, check_stale, resume_unfinished

__all__ = ["Planned", "apply_planned", "apply_saved", "check_stale", "make_plan", "plan_only", "resume_unfinished",
           "run_job", "verify"]
