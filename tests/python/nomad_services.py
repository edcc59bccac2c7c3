"""Nomad's service discovery API through python-nomad (from PyPI) against a Drover agent.

Usage: python3 nomad_services.py PORT
python-nomad 2.x has no module for the /v1/service(s) endpoints; this builds one the way
the library builds its own (a `Requester` with the client's settings: address, namespace,
token, errors), then registers a job with a group service, reads it through every service
endpoint Nomad has, deletes an instance and stops the job. Exits non-zero on any mismatch.
"""
import sys
import time

import nomad
from nomad.api.base import Requester
from nomad.api import exceptions


class Services(Requester):
    """GET /v1/services (each namespace's services and their tags)."""

    ENDPOINT = "services"

    def get_services(self):
        return self.request(method="get").json()


class Service(Requester):
    """GET and DELETE /v1/service/:name[/:id]."""

    ENDPOINT = "service"

    def get_service(self, name, tag=None, choose=None):
        params = {}
        if tag:
            params["tag"] = tag
        if choose:
            params["choose"] = choose
        return self.request(name, params=params, method="get").json()

    def delete_service(self, name, service_id):
        return self.request(name, service_id, method="delete")


class JobServices(Requester):
    """GET /v1/job/:id/services."""

    ENDPOINT = "job"

    def get_services(self, job_id):
        return self.request(job_id, "services", method="get").json()


class AllocationServices(Requester):
    """GET /v1/allocation/:id/services."""

    ENDPOINT = "allocation"

    def get_services(self, alloc_id):
        return self.request(alloc_id, "services", method="get").json()


port = int(sys.argv[1])
n = nomad.Nomad(host="127.0.0.1", port=port, timeout=10)
services = Services(**n.requester_settings)
service = Service(**n.requester_settings)

job = {
    "Job": {
        "ID": "pyservices",
        "Name": "pyservices",
        "Type": "service",
        "Datacenters": ["*"],
        "TaskGroups": [
            {
                "Name": "g",
                "Count": 2,
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Services": [
                    {
                        "Name": "pyweb",
                        "PortLabel": "http",
                        "Tags": ["v1", "python"],
                        "Provider": "nomad",
                    }
                ],
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

n.job.register_job("pyservices", job)
deadline = time.time() + 40
instances = []
while time.time() < deadline:
    instances = service.get_service("pyweb")
    if len(instances) == 2:
        break
    time.sleep(0.2)
else:
    sys.exit(f"two instances of pyweb were not registered: {instances}")

for r in instances:
    for field in ("ID", "ServiceName", "Namespace", "NodeID", "Datacenter", "JobID",
                  "AllocID", "Tags", "Address", "Port", "CreateIndex", "ModifyIndex"):
        assert field in r, (field, r)
    assert r["ServiceName"] == "pyweb" and r["JobID"] == "pyservices", r
    assert r["Tags"] == ["v1", "python"], r
    assert r["Port"] > 0, r

listed = services.get_services()
default = [ns for ns in listed if ns["Namespace"] == "default"]
assert default, listed
stubs = {s["ServiceName"]: s["Tags"] for s in default[0]["Services"]}
assert sorted(stubs.get("pyweb", [])) == ["python", "v1"], listed

assert len(service.get_service("pyweb", tag="v1")) == 2
assert service.get_service("pyweb", tag="v2") == []
chosen = service.get_service("pyweb", choose="1|somekey")
assert len(chosen) == 1, chosen
assert service.get_service("pyweb", choose="1|somekey") == chosen, "choose is stable per key"

# The job's and each allocation's services.
by_job = JobServices(**n.requester_settings).get_services("pyservices")
assert sorted(r["ID"] for r in by_job) == sorted(r["ID"] for r in instances), by_job
alloc_id = instances[0]["AllocID"]
by_alloc = AllocationServices(**n.requester_settings).get_services(alloc_id)
assert [r["AllocID"] for r in by_alloc] == [alloc_id], by_alloc

# Deleting an instance (as `nomad service delete` does).
gone = instances[0]["ID"]
service.delete_service("pyweb", gone)
left = service.get_service("pyweb")
assert gone not in [r["ID"] for r in left], left
try:
    service.delete_service("pyweb", "no-such-id")
    sys.exit("deleting an unknown instance succeeded")
except exceptions.URLNotFoundNomadException:
    pass
except exceptions.BaseNomadException as e:
    if e.nomad_resp.status_code not in (400, 404):
        raise

n.job.deregister_job("pyservices", purge=True)
deadline = time.time() + 30
while time.time() < deadline:
    if service.get_service("pyweb") == []:
        break
    time.sleep(0.2)
else:
    sys.exit("the stopped job's services stayed registered")
print("python-nomad services: ok")
