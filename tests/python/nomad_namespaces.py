"""python-nomad's namespace calls against a Drover agent.

Usage: python3 nomad_namespaces.py PORT
Creates, lists, reads, updates and deletes a namespace; registers a job in it and lists
jobs by namespace; a job in a missing namespace and the deletion of a namespace holding a
job are refused with the name in the message. Exits non-zero on any mismatch.
"""
import sys

import nomad
import nomad.api.exceptions as nexc

port = int(sys.argv[1])
n = nomad.Nomad(host="127.0.0.1", port=port, timeout=10)
prod = nomad.Nomad(host="127.0.0.1", port=port, timeout=10, namespace="pyprod")


def job(job_id, namespace):
    return {
        "Job": {
            "ID": job_id,
            "Name": job_id,
            "Namespace": namespace,
            "Type": "batch",
            "Datacenters": ["*"],
            "TaskGroups": [
                {
                    "Name": "g",
                    "Count": 1,
                    "Tasks": [
                        {
                            "Name": "t",
                            "Driver": "raw_exec",
                            "Config": {"command": "/bin/true"},
                            "Resources": {"CPU": 20, "MemoryMB": 16},
                        }
                    ],
                }
            ],
        }
    }


def refused(what, call, *needles):
    try:
        call()
    except nexc.BaseNomadException as e:
        text = e.nomad_resp.text if hasattr(e.nomad_resp, "text") else str(e.nomad_resp)
        for needle in needles:
            assert needle in text, f"{what}: {needle!r} not in {text!r}"
        return
    sys.exit(f"{what} was accepted")


assert "default" in n.namespaces, n.namespaces.get_namespaces()
n.namespace.create_namespace({"Name": "pyprod", "Description": "from python"})
assert "pyprod" in n.namespaces
assert "pyprod" in n.namespace
got = n.namespace.get_namespace("pyprod")
assert got["Description"] == "from python" and got["CreateIndex"] > 0, got
n.namespace.update_namespace("pyprod", {"Name": "pyprod", "Description": "updated", "Meta": {"team": "py"}})
got = n.namespace.get_namespace("pyprod")
assert got["Description"] == "updated" and got["Meta"] == {"team": "py"}, got
assert [x["Name"] for x in n.namespaces.get_namespaces(prefix="pyp")] == ["pyprod"]

refused(
    "a job in a missing namespace",
    lambda: n.job.register_job("pyghost", job("pyghost", "nowhere")),
    '"nowhere"',
)
prod.job.register_job("pyjob", job("pyjob", "pyprod"))
in_prod = [j["ID"] for j in prod.jobs.get_jobs()]
in_default = [j["ID"] for j in n.jobs.get_jobs()]
assert in_prod == ["pyjob"], in_prod
assert "pyjob" not in in_default, in_default
everywhere = [j["ID"] for j in n.jobs.get_jobs(namespace="*")]
assert "pyjob" in everywhere, everywhere

refused(
    "deleting a namespace that holds a job",
    lambda: n.namespace.delete_namespace("pyprod"),
    '"pyprod"',
    '"pyjob"',
)
prod.job.deregister_job("pyjob", purge=True)
n.namespace.delete_namespace("pyprod")
assert "pyprod" not in n.namespaces
refused("deleting the default namespace", lambda: n.namespace.delete_namespace("default"), "default")
print("python-nomad namespaces: ok")
