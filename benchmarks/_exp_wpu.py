import sys, time, gc, cProfile, pstats
from _workloads import orm_engine, orm_unit
from _harness import fill_process_report, flush_pipeline, SESSION_LISTENER
import sqlwatch
e = orm_engine(); sqlwatch.instrument(e); fill_process_report(e)
for i in range(300):
    with sqlwatch.watch("unit"):
        orm_unit(e, i)
w = sqlwatch.watch("unit")
def run(n):
    for i in range(n):
        with sqlwatch.watch("unit"):
            orm_unit(e, i)
t = time.perf_counter(); run(1000); print((time.perf_counter() - t) * 1e3, "us/unit")
cProfile.run("run(1000)", "/tmp/exp/wpu.prof")
p = pstats.Stats("/tmp/exp/wpu.prof"); p.sort_stats("cumulative")
p.print_stats("watch.py|scope.py|report.py", 25)
