"""A stock Nomad API client (python-nomad, from PyPI) against a Drover agent.

Usage: python3 nomad_smoke.py PORT
Lists, registers, reads and stops a job; exits non-zero with a message on any mismatch.
"""
import sys
import time

import nomad

port = int(sys.argv[1])
n = nomad.Nomad(host="127.0.0.1", port=port, timeout=10)

job = {
    "Job": {
        "ID": "pysmoke",
        "Name": "pysmoke",
        "Type": "service",
        "Datacenters": ["*"],
        "TaskGroups": [
            {
                "Name": "g",
                "Count": 1,
                "Tasks": [
                    {
                        "Name": "t",
                        "Driver": "raw_exec",
                        "Config": {"command": "/bin/sleep", "args": ["300"]},
                        "Resources": {"CPU": 20, "MemoryMB": 16},
                    }
                ],
            }
        ],
    }
}

before = n.jobs.get_jobs()
assert isinstance(before, list), before
resp = n.job.register_job("pysmoke", job)
assert resp["EvalID"], resp
ids = [j["ID"] for j in n.jobs.get_jobs()]
assert "pysmoke" in ids, ids
got = n.job.get_job("pysmoke")
assert got["ID"] == "pysmoke" and got["TaskGroups"][0]["Tasks"][0]["Driver"] == "raw_exec", got
assert "pysmoke" in n.jobs  # the client's membership test (GET /v1/job/pysmoke)

deadline = time.time() + 30
while time.time() < deadline:
    allocs = n.job.get_allocations("pysmoke")
    if any(a["ClientStatus"] == "running" for a in allocs):
        break
    time.sleep(0.2)
else:
    sys.exit(f"no running allocation: {allocs}")

stop = n.job.deregister_job("pysmoke")
assert stop["EvalID"], stop
deadline = time.time() + 30
while time.time() < deadline:
    if n.job.get_job("pysmoke")["Stop"] and all(a["ClientStatus"] != "running" for a in n.job.get_allocations("pysmoke")):
        break
    time.sleep(0.2)
else:
    sys.exit("job did not stop")
n.job.deregister_job("pysmoke", purge=True)
assert "pysmoke" not in [j["ID"] for j in n.jobs.get_jobs()]
print("python-nomad smoke: ok")
